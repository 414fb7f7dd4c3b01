"""Reviewing a sweep: `clexp-report` (`report`) reads the jobs (`records`), summarises them with intervals
(`summary`, `stats`), selects each method's strength on validation (`selection`), compares methods seed
by seed (`comparisons`), draws the figures (`report_figures`), writes `report.html` (`report_html`) and the
sweep-summary wandb run (`summary_run`)."""
