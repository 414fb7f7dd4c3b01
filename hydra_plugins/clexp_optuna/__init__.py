"""clexp's Hydra plugin: Hydra instantiates sweepers only from classes defined in its `hydra_plugins`
namespace, so the resumable Optuna sweeper lives here (`resumable_sweeper.py`), not in `clexp`."""
