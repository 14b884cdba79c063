"""The config schema: one frozen dataclass per YAML section.

Field metadata carries what the validator checks: ``choices``, ``min``/``max``,
``help``. Defaults here are the defaults users get; ``config_reference.md`` is
generated from this file. ``None`` means "absent / decided later".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


def opt(default: Any, help: str, *, choices=None, min=None, max=None, required=False):
    """A schema field with validation metadata."""
    metadata = {"help": help, "choices": choices, "min": min, "max": max, "required": required}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


TASK_TYPES = ("generic_timeseries_classification",)
KNOWN_TASK_TYPES = TASK_TYPES + ("generic_timeseries_regression", "generic_timeseries_anomalydetection",
                                 "arc_fault", "motor_fault", "ecg_classification", "image_classification")


@dataclass(frozen=True)
class CommonConfig:
    task_type: str = opt("generic_timeseries_classification", "What the model learns.", choices=KNOWN_TASK_TYPES)
    target_device: str = opt("F28P55", "Device the model is built for (see the device registry).")
    run_name: str = opt("{date-time}", "Run folder name; '{date-time}' is replaced by the start time.")
    output_dir: str = opt("./runs", "Where run folders are created (relative to the working directory).")
    seed: int = opt(42, "Seed for data splits, generation, initialisation and search.", min=0)
    num_threads: Optional[int] = opt(None, "torch CPU threads per process (default 1: tiny models train fastest "
                                           "single-threaded, and more threads slow down badly on a busy machine; "
                                           "spare cores serve nas.parallel_trials).", min=1)


@dataclass(frozen=True)
class DatasetConfig:
    enable: bool = opt(True, "Load the dataset (always needed unless compile-only).")
    dataset_name: str = opt("hello_world", "Name of the dataset; 'hello_world' with no path is built in.")
    input_data_path: Optional[str] = opt(None, "Dataset folder or local .zip (relative to the config file).")
    split_type: str = opt("amongst_files", "How recordings are split.", choices=("amongst_files", "within_files"))
    split_factor: list = opt([0.6, 0.2, 0.2], "[train, val, test] fractions summing to 1.")
    hello_world_variables: int = opt(1, "Channels of the built-in hello_world dataset.", min=1, max=16)
    hello_world_files_per_class: int = opt(40, "Recordings per class of the built-in hello_world dataset.", min=3)


FRAME_NORMALIZATIONS = ("none", "dc_remove", "normalize")


@dataclass(frozen=True)
class FeatureConfig:
    feature_extraction_name: str = opt("Generic_256Input_RAW_256Feature_1Frame",
                                       "Preset name (Generic_<N>Input_<RAW|FFTBIN>_<F>Feature_<K>Frame) or Custom_*.")
    feat_ext_transform: Optional[list] = opt(None, "Transform list for Custom_* (e.g. [FFT_FE, FFT_POS_HALF, ABS, BINNING, LOG_DB]).")
    variables: Optional[int] = opt(None, "Number of input channels to use (default: all in the data).", min=1)
    frame_size: Optional[int] = opt(None, "Samples per frame (default from the preset).", min=1)
    feature_size_per_frame: Optional[int] = opt(None, "Features per frame (default from the preset).", min=1)
    num_frame_concat: Optional[int] = opt(None, "Frames concatenated into one example.", min=1)
    frame_skip: Optional[int] = opt(None, "Use every n-th frame.", min=1)
    stride_size: Optional[float] = opt(None, "Window hop as a fraction of the window (1 = no overlap).", min=0.01, max=1.0)
    log_mul: Optional[float] = opt(None, "LOG_DB multiplier (default 20).")
    log_base: Optional[float] = opt(None, "LOG_DB base (default 10).", min=1.0001)
    log_threshold: Optional[float] = opt(None, "LOG_DB floor added before the log (default 1e-12).", min=0)
    scale: Optional[float] = opt(None, "Multiply features by this after extraction.")
    offset: Optional[float] = opt(None, "Add this to features after scaling.")
    normalize: bool = opt(True, "Standardise features with mean/std of the training split.")
    frame_normalization: str = opt("normalize", "Per-frame normalisation of time-domain features (RAW presets; "
                                   "a feat_ext_transform list is used as written), added before CONCAT: "
                                   "'dc_remove' subtracts "
                                   "each frame's mean per channel, 'normalize' also divides by its std "
                                   "(removes per-recording offsets and gains; the device must do the same, "
                                   "see docs/feature_extraction.md). Ignored for spectral features.",
                                   choices=FRAME_NORMALIZATIONS)
    frame_normalization_keep_raw: bool = opt(True, "With frame_normalization: keep the un-normalised channels too "
                                             "(C inputs become 2C: C raw, then C normalised), so levels that "
                                             "carry information (gravity, sag/swell) survive.")


NAS_PRESETS = ("s", "m", "l", "xl", "xxl")


@dataclass(frozen=True)
class TrainingConfig:
    enable: bool = opt(True, "Train a model.")
    model_name: str = opt("CLS_1k_NPU", "Zoo model name, 'auto' (multi-trial NAS) or 'NAS_result'.")
    model_spec_path: Optional[str] = opt(None, "best_model_spec.yaml to retrain with model_name 'NAS_result'.")
    training_epochs: Optional[int] = opt(None, "Epochs of training; empty (default): 40000 // training "
                                         "examples, at least 20 and at most 200 (tens of recordings: 200); above "
                                         "~16000 examples at least 5000 steps and 4 epochs instead of 20.", min=1)
    batch_size: Optional[int] = opt(None, "Mini-batch size; empty (default): clip(training examples // 8, 8, 64), "
                                    "about 8 steps per epoch (tens of recordings need small batches).", min=1)
    learning_rate: float = opt(0.01, "Initial learning rate.", min=0)
    optimizer: str = opt("adamw", "Optimizer.", choices=("adam", "adamw", "sgd"))
    weight_decay: float = opt(1e-3, "Weight decay.", min=0)
    lr_scheduler: str = opt("cosine", "Learning-rate schedule.", choices=("cosine", "step", "none"))
    label_smoothing: float = opt(0.1, "Label smoothing of the cross-entropy loss.", min=0, max=0.5)
    early_stopping_patience: Optional[int] = opt(None, "Stop after this many epochs without validation gain "
                                                "(empty, the default: train the whole learning-rate schedule); "
                                                "the best validation epoch picks the augmentation, and is the model "
                                                "when refit_with_val is off.", min=1)
    augment_shift: Optional[float] = opt(None, "Random time-shift augmentation as a fraction of the input length; "
                                         "empty (default): raw time-domain inputs are trained with 0.1 and with 0 "
                                         "(side by side on a spare core when torch runs single-threaded) "
                                         "and the better on validation is kept, smooth closed curves (outlines "
                                         "read from any start point) use 0.5; spectra use 0. A value set here "
                                         "is used for every input, spectra too (with a warning).", min=0, max=0.5)
    augment_flip: Optional[bool] = opt(None, "Reverse half of the training examples in time (a closed outline "
                                       "traced the other way round is its mirror image); empty (default): on for "
                                       "smooth closed curves only, the inputs that augment_shift shifts by 0.5.")
    refit_with_val: bool = opt(True, "After validation has chosen the augmentation, train once more from the same "
                               "initial weights on train + val and keep the last epoch (more data for small sets; "
                               "the reported validation accuracy is then that of the selection run).")
    augment_noise: float = opt(0.1, "Std of Gaussian noise added to (standardised) inputs during training.", min=0)
    augment_mixup: float = opt(0.0, "Mixup: each training example is blended with a random other one of its batch "
                               "(weight drawn from Beta(a, a), the loss blended alike); a is this value, 0 = off. "
                               "0.2 is a common choice for small noisy sets.", min=0, max=10)
    precise_batchnorm: bool = opt(True, "After training, recompute the batch-norm statistics of the kept weights "
                                  "in one pass over the clean (not augmented) training data, instead of keeping "
                                  "the running averages of the last augmented batches (UCR suite, DARTS: mean "
                                  "test accuracy 0.903 -> 0.928).")
    num_gpus: int = opt(0, "GPUs to use (0 = CPU; 1 = the first CUDA device; without one the run warns and "
                        "uses the CPU). A first-order DARTS search runs 2.5-10x faster on a GPU than on 2 CPU "
                        "cores, more for larger presets (its step is replayed as CUDA graphs; "
                        "docs/nas_library.md).", min=0)
    # DARTS (nas_guide_darts.txt)
    nas_enabled: bool = opt(False, "Search the architecture with DARTS before training.")
    nas_epochs: int = opt(10, "DARTS search epochs.", min=1)
    nas_warmup_epochs: Optional[int] = opt(None, "First search epochs that train the supernet weights only (alphas "
                                           "frozen), so parameter-free ops do not win while the convs are still "
                                           "untrained; empty (default): half of nas_epochs.", min=0)
    nas_min_steps_per_epoch: int = opt(20, "A search epoch is one pass over the training split or, when that is "
                                       "fewer batches, this many (the data is reshuffled and cycled): a few "
                                       "dozen recordings otherwise give the supernet 1-3 steps per epoch.", min=1)
    nas_max_steps_per_epoch: Optional[int] = opt(250, "A search epoch ends after this many steps (each epoch a "
                                                 "fresh random part of the training split), so the search time "
                                                 "stops growing above ~16000 windows. Empty: whole passes.",
                                                 min=1)
    nas_optimization_mode: str = opt("Memory", "What the search penalises.", choices=("Memory", "Compute"))
    nas_model_size: Optional[str] = opt(None, "DARTS preset (rows of the preset table).", choices=NAS_PRESETS)
    nas_nodes_per_layer: Optional[int] = opt(None, "Nodes per cell.", min=1)
    nas_layers: Optional[int] = opt(None, "Cells in the network (minimum 3).", min=3)
    nas_init_channels: Optional[int] = opt(None, "Channels of the first cell.", min=1)
    nas_init_channel_multiplier: Optional[int] = opt(None, "Stem channel multiplier.", min=1)
    nas_fanout_concat: Optional[int] = opt(None, "Nodes concatenated into a cell's output.", min=1)
    nas_unrolled: bool = opt(False, "Second-order (unrolled) architecture updates.")
    nas_penalty_weight: Optional[float] = opt(None, "Weight of the Memory/Compute penalty (default 0.5; setting it "
                                              "turns the preset-s default budget off).", min=0)
    nas_target_params: Optional[int] = opt(None, "Budget mode: aim the found model at this many parameters "
                                           "(default for preset s when no penalty weight or MAC target is set: "
                                           "4000, plus one classifier row per class beyond 10, so that many "
                                           "classes do not starve the feature layers; other presets use the "
                                           "penalty weight).", min=1)
    nas_target_macs: Optional[int] = opt(None, "Budget mode: aim the found model at this many MACs.", min=1)
    nas_beta_decay: Optional[float] = opt(None, "beta-DARTS regularisation weight against search collapse.", min=0)
    nas_partial_channels: int = opt(1, "PC-DARTS partial channels K: only 1/K of each edge's channels go through the "
                                    "candidate ops (K^2 fewer MACs, a faster search of large presets); must divide "
                                    "the channel count. 1 = off.", min=1)
    nas_stem_pool: Optional[int] = opt(None, "Max pool (width = stride) after the stem conv of the DARTS network: "
                                       "the cells see L // nas_stem_pool samples (fewer MACs, a wider receptive "
                                       "field); empty (default): for raw inputs the smallest of 1, 2, 4 that leaves the cells at "
                                       "most 64 samples, 1 for spectra.",
                                       min=1, max=4)
    nas_primitives: Optional[list] = opt(None, "Candidate ops of every DARTS edge (names of the OPS table, e.g. "
                                         "[none, max_pool_3x1, skip_connect, conv_bn_relu_3x1, sep_conv_5x1]); "
                                         "empty (default): the seed list (without avg_pool_3x1 for NPU targets) and "
                                         "sep_conv_3x1, sep_conv_5x1, sep_conv_7x1. "
                                         "NPU targets accept only NPU-realisable ops (no avg_pool_3x1, dil_conv_*).")
    nas_batch_size: Optional[int] = opt(32, "Batch size of the search (empty: batch_size).", min=1)
    nas_arch_learning_rate: Optional[float] = opt(None, "Adam learning rate of the architecture weights (default: "
                                                  "2 / number of alpha updates, so alphas can move ~2 logits "
                                                  "over the search whatever the data size).", min=0)
    # Quantization
    quantization: int = opt(0, "0: float model; 2: TINPU int8.", choices=(0, 2))
    quantization_method: str = opt("PTQ", "int8 method.", choices=("PTQ", "QAT"))
    quantization_weight_bitwidth: int = opt(8, "Weight bits.", choices=(8,))
    quantization_activation_bitwidth: int = opt(8, "Activation bits.", choices=(8,))
    qat_epochs: int = opt(5, "QAT fine-tune epochs.", min=1)


@dataclass(frozen=True)
class SearchSpaceConfig:
    conv_channels: list = opt([4, 8, 12, 16, 24, 32], "Channel choices per conv layer.")
    conv_kernels: list = opt([3, 5, 7], "Kernel choices.")
    num_conv_layers: list = opt([2, 3, 4, 5], "Number of conv layers.")
    fc_features: list = opt([0, 16, 32], "Hidden FC width choices (0 = none).")
    conv_strides: list = opt([1, 2], "Stride choices per conv layer.")
    pooling: list = opt(["none", "max2", "avg2"], "Pooling after a conv: 'none', 'maxN' or 'avgN' (N = 1..9).")


@dataclass(frozen=True)
class NasConfig:
    enable: bool = opt(False, "Run the multi-trial search.")
    search_type: str = opt("multi_trial", "Trials one at a time or several at once.", choices=("single_trial", "multi_trial"))
    num_trials: int = opt(20, "Architectures to evaluate (candidates rejected before training count too).", min=1)
    parallel_trials: int = opt(1, "Trials run at once (processes).", min=1)
    param_range: list = opt([100, 60000], "[min, max] parameters of a candidate.")
    accuracy_target: Optional[float] = opt(None, "Smallest acceptable validation accuracy.", min=0, max=1)
    accuracy_weight: float = opt(1.0, "Weight of accuracy in the score.", min=0)
    size_weight: float = opt(0.0, "Weight of size in the score.", min=0)
    latency_target: Optional[float] = opt(None, "Largest acceptable latency estimate (us).", min=0)
    latency_weight: float = opt(0.0, "Weight of latency in the score.", min=0)
    npu_compatible: Optional[bool] = opt(None, "Sample only NPU-valid candidates (default: when the device has an NPU).")
    search_space: SearchSpaceConfig = field(default_factory=SearchSpaceConfig, metadata={"help": "What candidates are made of."})
    sampler: str = opt("tpe", "Optuna sampler.", choices=("tpe", "nsga2", "random"))
    trial_epochs: int = opt(8, "Training epochs per trial.", min=1)
    early_stopping: bool = opt(False, "Stop when accuracy_threshold is reached and patience trials bring nothing.")
    accuracy_threshold: Optional[float] = opt(None, "Accuracy that allows early stopping.", min=0, max=1)
    patience: int = opt(5, "Trials without improvement before early stopping.", min=1)
    warm_start: bool = opt(False, "Evaluate initial_architecture as the first trial.")
    initial_architecture: Optional[str] = opt(None, "Zoo model name used by warm_start.")
    storage: Optional[str] = opt(None, "Optuna storage URL (default: SQLite in the run folder).")


@dataclass(frozen=True)
class TestingConfig:
    enable: bool = opt(True, "Evaluate on the test split.")
    test_float: bool = opt(True, "Test the float model.")
    test_quantized: bool = opt(True, "Test the int8 model when quantization is on.")
    save_predictions: bool = opt(False, "Write per-sample predictions to testing/predictions.csv.")


@dataclass(frozen=True)
class CompilationConfig:
    enable: bool = opt(False, "Check NPU rules and generate C artifacts.")
    preset_name: str = opt("default", "Compiler preset.", choices=("default", "best_performance", "compress"))
    model_path: Optional[str] = opt(None, "Compile-only: an existing ONNX model (training disabled).")
    host_check: bool = opt(True, "Build and run the generated C on this machine and require bit-exact results.")


@dataclass(frozen=True)
class Config:
    common: CommonConfig = field(default_factory=CommonConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    data_processing_feature_extraction: FeatureConfig = field(default_factory=FeatureConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    testing: TestingConfig = field(default_factory=TestingConfig)
    compilation: CompilationConfig = field(default_factory=CompilationConfig)
    nas: NasConfig = field(default_factory=NasConfig)
    # Where the YAML came from: relative dataset/spec paths resolve against it.
    source_path: str = field(default="", metadata={"internal": True})
