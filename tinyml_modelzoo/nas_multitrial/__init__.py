"""Multi-trial neural architecture search (``nas:`` config section, nas_guide_multi_trial).

Optuna samples sequential 1-D CNNs (``ModelSpec``) from ``nas.search_space``,
rejects those outside ``param_range`` / ``latency_target`` / the NPU rules before
training, trains the rest for ``trial_epochs`` and scores them on validation.
``run_multi_trial`` runs (or resumes) a search and writes the NAS/ files;
``run_worker`` lets another process or machine join the same study.
See docs/nas_multi_trial.md.
"""
from .search import MultiTrialResult, prepare_study, run_multi_trial, run_worker
from .selection import choose_best, pareto_front, score
from .space import CandidateSpace, npu_rule_violations
from .worker_cli import join_as_worker

__all__ = ["CandidateSpace", "MultiTrialResult", "choose_best", "join_as_worker", "npu_rule_violations", "pareto_front",
           "prepare_study", "run_multi_trial", "run_worker", "score"]
