"""The typed configuration: one dataclass per section. These dataclasses are the defaults.

``conf/`` (Hydra) sets values; a value not set there is the field's default here. The same
classes are registered with Hydra's ConfigStore (:func:`pipeline.config.register_schemas`),
so ``ffm-train`` type-checks what it composes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from optics.core.ffm import Objective
from optics.core.optim import OptimizerSpec


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


class TrainerKind(enum.StrEnum):
    FFM = "ffm"  # fully forward mode: data and error passes on the chips
    PAT = "pat"  # physics-aware training: data pass and loss on the chips, error pass through the twin
    INSILICO = "insilico"  # backprop through the twin, deploy on the chips
    IDEAL = "ideal"  # train and test on the twin (the upper bound)


class TopologyKind(enum.StrEnum):
    SINGLE = "single"
    DATA_PARALLEL = "data_parallel"
    PIPELINE = "pipeline"
    WIDTH = "width"


class Loss(enum.StrEnum):
    CROSS_ENTROPY = "cross_entropy"
    SCALED_MSE = "scaled_mse"  # MSE to the label's detector pattern after a least-squares scale (Xue et al. 2024)


@dataclass
class ChipConfig:
    kind: str = "diffractive"  # a chip system of pipeline.chips.CHIPS (diffractive | mzi | rig)
    geometry: str = "reference"  # diffractive: reference | small | xue2024
    n_modes: int | None = None  # mzi: modes (None: the task's features + 1 reference mode)
    arrangement: str = "double"  # mzi: double (reflective, M = A^T R A, FFM-exact) | single
    n: int | None = None  # overrides of the named geometry
    n_layers: int | None = None
    distance: float | None = None
    pad: int | None = None
    detector_layout: str | None = None  # diffractive: rows | xue2024 (None: the named geometry's)
    level: float = 1.0  # scales every imperfection and the noise
    hardware: dict = field(default_factory=dict)  # HardwareSpec knobs (each scaled by level)
    measurement: dict = field(default_factory=dict)  # MeasurementSpec knobs
    activation: str = "none"  # between measured layers (reload model): none | saturable_phase | kerr
    activation_intensity: float = 20.0  # its intensity scale, in units of a unit-power field's mean (1/n^2)
    backend: str = "numpy"
    precision: str = "complex64"
    fft_threads: int | None = None
    fft_planner: str = "measure"  # measure (fast; plans shared via a wisdom file) | estimate
    samples_per_pass: int | None = None  # memory-lean: at most this many samples per chip pass
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    resources: dict = field(default_factory=dict)  # custom Ray resources, e.g. {optical_chip: 1}
    calibrate_registration: bool = False  # measure and correct plane registration before training
    only: str | None = None  # diffractive: keep one imperfection group (chips.diffractive), zero the rest

    options: dict = field(default_factory=dict)  # per-kind options, read by the chip system's adapter


@dataclass
class RigHardwareConfig:
    """The names a rig's slmsuite server gives each role (null: the role is not there)."""

    field_amplitude: str = "field_amplitude"  # the field loader's amplitude SLM
    field_phase: str = "field_phase"  # the field loader's phase SLM
    design_phase: str | None = "design_phase"  # null: the loader's phase SLM also shows the design phase
    camera: str = "camera"  # the holographic camera
    intensity_camera: str | None = None  # a second camera without the reference


@dataclass
class RigEmulatorConfig:
    """An emulated rig (rig.address null): one ``ffm-rig serve --emulated`` per chip on 127.0.0.1."""

    seed: int | None = None  # hidden imperfections and noise (null: the chip's seed)
    level: float | None = None  # imperfection level (null: chip.level); its knobs are chip.hardware
    real_time: bool = False  # sleep for settles and exposures (false: a virtual clock)
    photons_per_px_s: float = 1.0e6  # at loader amplitude 1
    exposure_s: float = 0.01  # the cameras' initial exposure
    settle_s: float = 0.15  # the emulated SLMs' own settle time
    drift_rad_per_frame: float = 0.002  # reference-phase random walk, rms per frame
    pitch_m: float | None = None  # its SLMs' and cameras' pitch (null: the chip's; another: a mismatched rig)
    camera_oversample: int | None = None  # its camera's pixels per SLM pixel (null: rig.camera_oversample)
    fault_frames: list = field(default_factory=list)  # frame indices that fail (fault-injection tests)
    fault_kind: str = "drop"  # timeout | drop


@dataclass
class RigConfig:
    """A physical measure-and-reload rig (chip=rig), driven over slmsuite's TCP protocol."""

    address: str | None = None  # HOST:PORT of its ffm-rig server (null: an emulated rig per chip)
    hardware: RigHardwareConfig = field(default_factory=RigHardwareConfig)
    scheme: str = "3-step"  # holography: 3-step | 4-step | off-axis
    camera_oversample: int = 1  # camera pixels per SLM pixel (off-axis holography needs >= 2)
    averaging: int = 1  # frames averaged per phase step
    drift_every_batches: int = 1  # re-measure the reference phase every this many batches
    calibrate_response: bool = True  # measure the design SLM's phase response at start and invert it
    error_exposure_boost: float = 3.0  # the first error-pass hop's exposure multiplier
    frame_retries: int = 3  # retries of a frame or write before the chip fails
    frame_timeout_s: float = 5.0
    frame_rate_hz: float = 30.0  # the camera's frame rate
    settle_s: float | None = None  # after each SLM write (null: each SLM's own settle time)
    connect_timeout_s: float = 5.0  # the driver's and each chip's connection to the rig
    emulator: RigEmulatorConfig = field(default_factory=RigEmulatorConfig)


@dataclass
class TaskConfig:
    name: str = "digits"  # digits | idx | iris
    features: int = 15  # mzi chips: PCA components of an image task (iris: its 4)
    data_dir: str | None = None  # folder of MNIST-format IDX files (task=idx)
    per_class: list | None = None  # image tasks: keep the first [train, eval] samples of each class (val, test: eval)
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: int = 0


@dataclass
class TrainerConfig:
    kind: str = "ffm"  # ffm | pat | insilico | ideal
    epochs: int = 4
    batch_size: int = 32  # global batch, split across chips
    eval_batch_size: int = 128
    optimizer: str = OptimizerSpec.kind
    lr: float = OptimizerSpec.lr
    momentum: float = 0.0
    loss: str = Objective.kind
    temperature: float = Objective.temperature
    train_amplitude: bool = False
    per_sample_grad_max: float | None = None  # rescale each sample's layer gradient to this max before the batch mean
    fidelity_every: int = 10  # rounds between gradient-fidelity checks (0: never)
    max_rounds: int | None = None  # stop early (debug and smoke runs)
    masks_from: str | None = None  # insilico: deploy these trained phases (phases.npz), no training


@dataclass
class TopologyConfig:
    kind: str = "data_parallel"  # single | data_parallel | pipeline | width
    n_chips: int = 2
    chip_seeds: list = field(default_factory=lambda: [1, 2])
    shared_phases: bool = True  # one mask set for every chip, or one per chip
    microbatches: int = 4  # pipeline: microbatches per round


@dataclass
class TrackingConfig:
    kind: str = "mlflow"  # mlflow | none
    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else the local SQLite store
    experiment: str = "ffm-optics"
    run_name: str | None = None
    log_images: bool = True
    parent_run_id: str | None = None  # sweeps: the parent run this job's run nests under
    flush_timeout_s: float = 120.0  # at the end: wait this long for the spool to drain
    probe_timeout_s: float = 10.0  # before anything starts: is the tracking server there?
    tags: dict = field(default_factory=dict)  # extra run tags (sweeps: the job key)
    command: str | None = None  # the command line that started the run (ffm-train sets it): the run description
    log_model: bool = True  # the trained masks on the twin as an MLflow model (runs:/<id>/model)
    register_model: str | None = None  # also register that model under this name (a new version per run)
    system_metrics_s: float = 5.0  # sample the coordinator host's CPU, memory, network every so often (0: off)


@dataclass
class ClusterConfig:
    kind: str = "local"  # local | address
    address: str | None = None
    num_cpus: int | None = None  # local cluster size (None: all cores)
    include_dashboard: bool = False
    round_timeout_s: float = 600.0
    max_restarts: int = 3  # per chip actor
    round_retries: int = 3  # re-runs of a failed round before giving up on a chip
    on_chip_failure: str = "fail"  # fail | drop
    check_resources: bool = True  # refuse chips the cluster cannot place (off: autoscaling)


@dataclass
class DebugConfig:
    crash_chip: int | None = None  # fault injection: this chip's process exits ...
    crash_round: int | None = None  # ... at this round, once
    crash_points: list = field(default_factory=list)  # more crashes: "chip:call:round", call round|val|test
    interrupt_round: int | None = None  # simulate Ctrl-C before this round
    kill_round: int | None = None  # SIGKILL this driver before this round (a lost driver)


@dataclass
class SweepConfig:
    """A sweep of independent jobs (pipeline.sweeps.grid): one MLflow parent run, one child per job."""

    name: str | None = None  # None: not a sweep, one training run
    seeds: list = field(default_factory=list)  # each seed: shuffling seed and chip instance
    trainers: list = field(default_factory=list)  # ideal | insilico | pat | ffm (insilico reuses ideal's masks)
    axes: dict = field(default_factory=dict)  # dotted config key -> list of values (a grid)
    max_parallel: int | None = None  # jobs at once (None: cluster CPUs / CPUs per job)
    resume: str = "auto"  # auto (same sweep, unfinished parent) | never | <parent run id>
    root: str = "outputs/sweeps"  # job folders: <root>/<parent run id>/<job>
    stop_after: int | None = None  # debug: stop after this many jobs (an interrupted sweep)


@dataclass
class SearchConfig:
    """hparams_search=<name>: a hyperparameter search on Ray Tune with Optuna (pipeline.search)."""

    name: str | None = None  # None: no search
    space: dict = field(default_factory=dict)  # dotted key -> {type: loguniform|uniform|int|choice, low, high, values}
    objective: str = "val_accuracy"  # what trials report per epoch: val_accuracy (mean over chips)
    trials: int = 16  # trials in all, the default configuration's included
    max_concurrent: int | None = None  # trials at once (None: cluster CPUs / CPUs per trial)
    time_budget_s: float | None = None  # stop starting trials after this long (None: no limit)
    seed: int = 0  # the sampler's seed (TPE)
    startup_trials: int = 4  # TPE's random trials before it models the objective
    default_first: bool = True  # trial 0 is the configuration's own values (points_to_evaluate)
    grace_epochs: int = 1  # ASHA: epochs every trial trains before it may be stopped
    reduction_factor: float = 2.0  # ASHA: keep the best 1/rf at each rung
    resume: str = "auto"  # auto (the same search, unfinished) | never
    root: str = "outputs/search"  # Tune's storage and the trials' folders: <root>/<search id>/
    top_k: int = 0  # promotion: re-run the best k configurations on promote_chip (0: none)
    promote_chip: str = "rig"  # the chip config group the best configurations are re-run on
    kill_after_trials: int | None = None  # debug: SIGKILL the search driver after this many trials end


@dataclass
class FocusingConfig:
    """experiment=focusing: FFM vs model-free focusing through a scattering medium."""

    medium: dict = field(default_factory=dict)  # optics.scattering.medium.MediumSpec knobs
    targets: list = field(default_factory=lambda: [[32, 32]])  # camera pixels (row, col) to focus on
    seeds: list = field(default_factory=lambda: [1, 2, 3])  # one hidden medium per seed, one actor each
    loss: str = "log_intensity"
    ffm_steps: int = 40
    lr: float = 0.3
    sequential_cycles: int = 2
    phase_steps: int = 4
    pso_particles: int = 16
    pso_iterations: int = 150


@dataclass
class ExceptionalPointConfig:
    """experiment=exceptional_point: drive coupled resonators to an exceptional point."""

    gain: list = field(default_factory=lambda: [-0.25, -2.25])  # net gain per resonator, units of gamma0
    seeds: list = field(default_factory=lambda: [1, 2, 3])  # one hidden device per seed
    start: list = field(default_factory=lambda: [1.0, -1.0, 2.0])  # knobs w1..wN, k1..k(N-1)
    steps: int = 20
    lr: float = 0.5
    method: str = "gauss_newton"


@dataclass
class NLOSConfig:
    """experiment=nlos: imaging hidden objects through a scattering wall (pipeline.studies.nlos)."""

    scene: dict = field(default_factory=dict)  # optics.scattering.nlos.NLOSSpec knobs; wall: MediumSpec knobs
    seeds: list = field(default_factory=lambda: [1, 2, 3])  # one hidden wall per seed, one actor each
    precision: str = "complex64"  # complex64 | complex128
    ffm_steps: int = 300  # 9 scenes x 2 camera frames per step
    lr: float = 0.05  # Adam, radians per step
    record_every: int = 10  # steps between noise-free SSIM evaluations (the curve)
    zernike_modes: int = 28  # simulated annealing's modes (Noll 2..29)
    sa_step_rad: float = 0.1  # annealing's proposal, radians rms per mode (0.03-1 tried: 0.03-0.1 best)
    ridge_repeats: int = 4  # noisy frames per training scene for the ridge reconstruction
    ridge_alpha: float = 0.01
    test_scenes: int = 8  # unseen scenes of 5 and of 7 objects each
    digits: bool = True  # classify hidden digits from the frames
    camera_fps: float = 42.0  # the stated camera (Taichi-II's) for the frame rate
    fast_camera_fps: float = 1000.0  # a high-speed camera: the all-optical imager's rate with it


@dataclass
class StudyConfig:
    """Non-classification studies run by :mod:`pipeline.studies.runner` instead of training rounds."""

    kind: str | None = None  # None | focusing | exceptional_point | nlos
    focusing: FocusingConfig = field(default_factory=FocusingConfig)
    exceptional_point: ExceptionalPointConfig = field(default_factory=ExceptionalPointConfig)
    nlos: NLOSConfig = field(default_factory=NLOSConfig)


@dataclass
class PathsConfig:
    """Where everything a run generates goes (all of it ignored by git)."""

    root: str = "outputs"  # runs/<date>/<time>, sweeps/, search/, reports/, mlflow.db and mlruns/


@dataclass
class RunConfig:
    chip: ChipConfig = field(default_factory=ChipConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    topology: TopologyConfig = field(default_factory=TopologyConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    rig: RigConfig = field(default_factory=RigConfig)  # chip=rig: the rig each chip drives
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 0
    checkpoint_every: int = 20
    resume: str | None = None  # checkpoint .npz or MLflow run id
    vars: dict = field(default_factory=dict)  # free values experiment files interpolate
    output_dir: str | None = None  # None: <paths.root>/runs/<date>/<time> (Hydra: its run folder)
