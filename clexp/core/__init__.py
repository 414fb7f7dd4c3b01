"""One run: the checks before anything heavy (`validation`), the objects built from the config (`build`),
the LightningModule (`module`), the stream loop (`runner`) with one Trainer per experience (`trainer`),
evaluation and metrics (`evaluation`, `metrics`), stream checkpoints (`checkpoint`), the run's files and
figures (`results`, `plots`), its loggers and console (`loggers`, `tensorboard_logger`, `console`,
`naming`), DDP under Hydra (`ddp`), and the run's Lightning callbacks (`callbacks/`)."""
