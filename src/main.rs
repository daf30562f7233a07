//! `mnist-mlp`: the Keras MNIST MLP tutorial, in Rust on Burn.
//!
//! This file only parses arguments and calls the library; see `src/lib.rs`.

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use mnist_mlp::backend::Backend;
use mnist_mlp::config::{ConfigError, Overrides, RunSettings, TrainConfig};
use mnist_mlp::data::Mnist;
use mnist_mlp::fault;
use mnist_mlp::inspection::{self, ComputeOn, eval, export, predict, show};
use mnist_mlp::run_dir::{RunDir, RunStatus};
use mnist_mlp::saved::Weights;
use mnist_mlp::serve;
use mnist_mlp::sweep::{self, Sweep};
use mnist_mlp::training::{self, Dashboard};
use std::path::PathBuf;
use std::process::ExitCode;

/// Train the Keras MNIST tutorial's MLP with Burn, and work with what training recorded.
#[derive(Parser, Debug)]
#[command(name = "mnist-mlp", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train Dense(512, relu) → Dense(512, relu) → Dense(10, softmax) on MNIST for 5 epochs with
    /// Keras's RMSprop, validating after every epoch; prints the run directory last.
    Train(Box<TrainArgs>),
    /// Fetch and verify MNIST (without training) and describe it.
    Data(DataArgs),
    /// List the recorded runs, newest first: epochs, final metrics, best val_accuracy, what
    /// they validated on, status; `runs prune` frees disk.
    Runs(RunsCommandArgs),
    /// Show what one run recorded: its config, the per-epoch history and the checkpoints.
    Inspect(InspectArgs),
    /// Keras's model.summary(): each layer, its output shape and parameter count.
    Summary(SummaryArgs),
    /// Score a run's model on the test images it was validated on: loss, accuracy, confusion
    /// matrix, per-class precision/recall/F1; writes confusion.png and mistakes.png into the run.
    Eval(EvalArgs),
    /// Classify your own pictures of digits (PNG, JPEG, PGM; any size, colour or grey).
    Predict(PredictArgs),
    /// Print one MNIST image's pixel values and label, or save digits as a picture.
    Show(ShowArgs),
    /// Write a run's model for other frameworks: its weights for PyTorch (nn.Linear names and
    /// layout), or the whole model as an ONNX graph for ONNX Runtime and other ONNX runtimes.
    Export(ExportArgs),
    /// Serve a local web page: the runs and their curves, and a drawing pad that predicts the
    /// digit you draw with any checkpoint. Prints `Serving http://HOST:PORT/` first.
    Serve(ServeArgs),
    /// Many runs of one training, compared: expand a sweep spec into trials, train them with
    /// one or many workers (processes, machines, a Slurm job array, a Kubernetes Indexed Job),
    /// and show them best first. See docs/sweeps.md.
    #[command(subcommand)]
    Sweep(SweepCommand),
    /// Log a recorded run to TensorBoard event files or an MLflow tracking server, as `train
    /// --tensorboard`/`--mlflow` would have: for runs trained without them, or while the
    /// server was down. Epochs only: the step losses are not recorded.
    Log(LogArgs),
}

#[derive(clap::Args, Debug)]
struct LogArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Write the run's event files under DIR/<run name>/ (as train --tensorboard); epochs a
    /// directory already holds are not written again
    #[arg(long, value_name = "DIR")]
    tensorboard: Option<PathBuf>,
    /// The MLflow tracking server to log the run to (as train --mlflow)
    #[arg(long, value_name = "URI", env = "MLFLOW_TRACKING_URI")]
    mlflow: Option<String>,
    /// The MLflow experiment the run is logged under
    #[arg(long, value_name = "NAME", default_value = "mnist-mlp")]
    mlflow_experiment: String,
}

#[derive(Subcommand, Debug)]
enum SweepCommand {
    /// Expand a sweep spec (TOML) into numbered trials and record them in
    /// <artifact-dir>/sweeps/<name>/; prints the sweep directory. Nothing is trained yet.
    Init(SweepInitArgs),
    /// Claim the next untrained trial of a sweep and train it, until none is left; with
    /// --index, SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX, exactly that trial. Each trial
    /// that finishes prints its final metrics as name=value lines.
    Work(SweepWorkArgs),
    /// The trials of a sweep, best val_accuracy first: settings, epochs, metrics, state.
    Status(SweepStatusArgs),
}

#[derive(clap::Args, Debug)]
struct SweepInitArgs {
    /// The sweep spec: a [sweep] section, and optionally [base] config keys
    spec: PathBuf,
    /// Where sweeps are recorded: <DIR>/sweeps/<name>/ [default: run.artifact_dir of the base
    /// config]
    #[arg(long, value_name = "DIR", env = "MNIST_MLP_ARTIFACT_DIR")]
    artifact_dir: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct SweepNameArgs {
    /// A sweep name under <artifact-dir>/sweeps/, or a sweep directory
    sweep: String,
    /// Where sweeps are recorded: <DIR>/sweeps/<name>/ [default: run.artifact_dir of the config]
    #[arg(long, value_name = "DIR", env = "MNIST_MLP_ARTIFACT_DIR")]
    artifact_dir: Option<PathBuf>,
    /// A trial's owner that this process cannot see (on another host, or in a PID namespace
    /// out of its sight) is gone once its heartbeat (renewed every second) is older than this
    /// many seconds; one it can see is gone once its process is (docs/sweeps.md)
    #[arg(long, value_name = "SECONDS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(3..))]
    stale_after: u64,
}

#[derive(clap::Args, Debug)]
struct SweepStatusArgs {
    #[command(flatten)]
    sweep: SweepNameArgs,
    #[command(flatten)]
    json: JsonArg,
}

#[derive(clap::Args, Debug)]
struct SweepWorkArgs {
    #[command(flatten)]
    sweep: SweepNameArgs,
    /// Train exactly this trial (0-based) [default: SLURM_ARRAY_TASK_ID, else
    /// JOB_COMPLETION_INDEX, else the next unclaimed one, repeatedly]
    #[arg(long, value_name = "N")]
    index: Option<usize>,
    /// Directory holding the four MNIST IDX files [default: where the trials' config says]
    #[arg(long, value_name = "DIR", env = "MNIST_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// How to show each trial's progress (on stdout, as `train` does)
    #[arg(long, value_enum, default_value_t = DashboardArg::None)]
    dashboard: DashboardArg,
}

#[derive(clap::Args, Debug)]
struct RunsArgs {
    /// Where runs are recorded: <DIR>/runs/<name>/ [default: run.artifact_dir of the config]
    #[arg(long, value_name = "DIR", env = "MNIST_MLP_ARTIFACT_DIR")]
    artifact_dir: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct JsonArg {
    /// Print the result as JSON (docs/usage.md gives its shape), numbers unrounded
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct InspectArgs {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    json: JsonArg,
}

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
struct RunsCommandArgs {
    #[command(subcommand)]
    action: Option<RunsAction>,
    #[command(flatten)]
    runs: RunsArgs,
    #[command(flatten)]
    json: JsonArg,
}

#[derive(Subcommand, Debug)]
enum RunsAction {
    /// Free disk: delete the checkpoints each run's retention rule (checkpoints.keep_last,
    /// keep_best in its config, or the flags here) does not keep. A live run is left alone;
    /// the last checkpoint, which --resume needs, and model.bpk always stay.
    Prune(PruneArgs),
}

#[derive(clap::Args, Debug)]
struct PruneArgs {
    /// Runs to prune, names or directories [default: every run]
    runs: Vec<String>,
    #[command(flatten)]
    dir: RunsArgs,
    /// Keep the whole checkpoint of the last N epochs [default: the run's keep_last; a run
    /// without one keeps everything]
    #[arg(long, value_name = "N")]
    keep_last: Option<usize>,
    /// Also keep the best epoch's weights (highest val_accuracy) [default: the run's
    /// keep_best, true unless set]
    #[arg(long, value_name = "true|false")]
    keep_best: Option<bool>,
    /// Say what would be deleted, and delete nothing
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// A run name under <artifact-dir>/runs/, or a run directory
    run: String,
    #[command(flatten)]
    runs: RunsArgs,
}

#[derive(clap::Args, Debug)]
struct SummaryArgs {
    /// A run name or directory [default: the tutorial's model, untrained]
    run: Option<String>,
    #[command(flatten)]
    runs: RunsArgs,
    #[command(flatten)]
    json: JsonArg,
}

#[derive(clap::Args, Debug)]
struct CheckpointArg {
    /// Which weights: an epoch (1, 2, …), best (highest val_accuracy), last (last checkpoint)
    /// or final (model.bpk) [default: final when the run finished, else last]
    #[arg(long, value_name = "EPOCH|best|last|final")]
    checkpoint: Option<Weights>,
}

#[derive(clap::Args, Debug)]
struct EvalArgs {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    on: ComputeArgs,
    #[command(flatten)]
    checkpoint: CheckpointArg,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
    /// Also write each image's ten probabilities to FILE as CSV (index,p0,…,p9), to compare
    /// an export's output with
    #[arg(long, value_name = "FILE")]
    probabilities: Option<PathBuf>,
    /// Directory holding the four MNIST IDX files [default: where the run's config says]
    #[arg(long, value_name = "DIR", env = "MNIST_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct PredictArgs {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    on: ComputeArgs,
    /// Pictures of one digit each; each is answered on its own, and one that cannot be read
    /// gets an error line (the exit status is then non-zero)
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    #[command(flatten)]
    checkpoint: CheckpointArg,
    #[command(flatten)]
    json: JsonArg,
    /// Write what the model saw, each picture prepared as a 28×28 MNIST digit, as DIR/NAME.png
    #[arg(long, value_name = "DIR")]
    save_input: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    #[command(flatten)]
    runs: RunsArgs,
    #[command(flatten)]
    on: ComputeArgs,
    /// The address to listen on; 127.0.0.1 keeps the page to this machine
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The port to listen on; 0 picks a free one (printed)
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Answer requests for this name too (a name in /etc/hosts, the machine's name on the
    /// network); by default only localhost, 127.0.0.1, [::1] and the --host address are, on
    /// every bind, against DNS rebinding. Repeatable
    #[arg(long = "allow-host", value_name = "NAME")]
    allow_hosts: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct ComputeArgs {
    /// Backend to compute on: ndarray, flex or wgpu [default: the run's, when this build has
    /// it, else ndarray]
    #[arg(long)]
    backend: Option<Backend>,
    /// Device number within the backend (for wgpu, the adapter) [default: the run's when on
    /// its backend, else 0]
    #[arg(long, value_name = "N")]
    device: Option<usize>,
}

impl From<&ComputeArgs> for ComputeOn {
    fn from(args: &ComputeArgs) -> Self {
        ComputeOn {
            backend: args.backend,
            device: args.device,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum SplitArg {
    /// The 60,000 training images
    Train,
    /// The 10,000 test images
    Test,
}

#[derive(clap::Args, Debug)]
struct ShowArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Which images: MNIST's training or test split
    #[arg(long, value_enum, default_value_t = SplitArg::Train)]
    split: SplitArg,
    /// The image (0-based); with --grid, the first one
    #[arg(long, value_name = "N", default_value_t = 0)]
    index: usize,
    /// Save the image (280×280 grey), or with --grid the grid, as PNG
    #[arg(long, value_name = "FILE")]
    png: Option<PathBuf>,
    /// Draw N digits (1–64) from --index on as one picture, each with its label
    #[arg(long, value_name = "N", requires = "png",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    grid: Option<u16>,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum FormatArg {
    /// safetensors with PyTorch nn.Linear names: 0.weight [512, 784], 0.bias, 2.weight, …
    Safetensors,
    /// ONNX (opset 13): input `pixels` [N, 784] in 0–1, outputs `probabilities` and `logits`
    /// [N, 10]
    Onnx,
}

#[derive(clap::Args, Debug)]
struct ExportArgs {
    #[command(flatten)]
    run: RunArgs,
    /// The file format [default: the one --out's extension names, .safetensors or .onnx]
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// The file to write
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Replace a file already at --out (without it, one there is refused)
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    checkpoint: CheckpointArg,
}

#[derive(clap::Args, Debug)]
struct ConfigArgs {
    /// TOML config file [default: config/train.toml when it exists, else built-in defaults]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Directory holding the four MNIST IDX files (raw or .gz); skips the cache and downloads
    #[arg(long, value_name = "DIR", env = "MNIST_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Mirror base URLs to download MNIST from, comma-separated [env: MNIST_MIRROR]
    // MNIST_MIRROR is read in `resolve`, not by clap: clap counts an environment value as a
    // given flag, so an exported MNIST_MIRROR would make `train --resume` a usage error.
    #[arg(long, value_name = "URL", value_delimiter = ',')]
    mirror: Option<Vec<String>>,
}

#[derive(clap::Args, Debug)]
struct TrainArgs {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    settings: RunSettings,
    /// Where runs are recorded: <DIR>/runs/<name>/ (run.artifact_dir)
    // Taken from the environment by clap: --resume does not conflict with it (it names where
    // the run to resume is), so an exported value is no usage error, unlike MNIST_MIRROR's.
    #[arg(long, value_name = "DIR", env = "MNIST_MLP_ARTIFACT_DIR")]
    artifact_dir: Option<PathBuf>,
    /// How to show progress: the terminal dashboard, Keras's progress bar, one line per epoch,
    /// or nothing
    #[arg(long, value_enum, default_value_t = DashboardArg::Auto)]
    dashboard: DashboardArg,
    /// Keras's spelling of --dashboard, as in `model.fit(verbose=...)`: 0 none, 1 bar, 2 plain
    #[arg(long, value_name = "0|1|2", conflicts_with = "dashboard",
          value_parser = clap::value_parser!(u8).range(0..=2))]
    verbose: Option<u8>,
    /// Continue an interrupted run (a name or a run directory) from its last complete
    /// checkpoint, with its own config; the result equals an uninterrupted run's. With
    /// --epochs N (the only setting it takes), carry a run, finished or not, on to N epochs
    #[arg(long, value_name = "RUN", conflicts_with_all = ["config", "mirror"])]
    resume: Option<String>,
}

#[derive(clap::Args, Debug)]
struct DataArgs {
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum DashboardArg {
    /// The terminal dashboard when stdout is a terminal, else plain
    Auto,
    /// Burn's terminal dashboard
    Tui,
    /// Keras's progress bar: steps, time left, running loss and accuracy (`verbose=1`)
    Bar,
    /// One Keras-style line per epoch
    Plain,
    /// Only the final summary
    None,
}

impl From<DashboardArg> for Dashboard {
    fn from(arg: DashboardArg) -> Self {
        match arg {
            DashboardArg::Auto => Dashboard::Auto,
            DashboardArg::Tui => Dashboard::Tui,
            DashboardArg::Bar => Dashboard::Bar,
            DashboardArg::Plain => Dashboard::Plain,
            DashboardArg::None => Dashboard::None,
        }
    }
}

impl ConfigArgs {
    fn resolve(&self, mut overrides: Overrides) -> Result<TrainConfig, ConfigError> {
        overrides.data_dir.clone_from(&self.data_dir);
        overrides.mirrors = self.mirror.clone().or_else(|| {
            let urls = std::env::var("MNIST_MIRROR").ok()?;
            (!urls.is_empty()).then(|| urls.split(',').map(String::from).collect())
        });
        TrainConfig::resolve(self.config.as_deref(), &overrides)
    }
}

fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    refuse_settings_with_resume(&matches);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            // Every error of this crate already says its cause (`{error:#}` would say it twice).
            eprintln!("error: {error}");
            ExitCode::from(fault::exit_code(&*error))
        }
    }
}

/// A resumed run keeps its own config; of the settings, only `--epochs` may carry it on. A
/// usage error (exit 2) naming the flag otherwise.
fn refuse_settings_with_resume(matches: &clap::ArgMatches) {
    let Some(("train", train)) = matches.subcommand() else {
        return;
    };
    if !train.contains_id("resume") || train.get_one::<String>("resume").is_none() {
        return;
    }
    let given = train
        .get_many::<clap::Id>("settings")
        .into_iter()
        .flatten()
        // Only what was typed: MLFLOW_TRACKING_URI in the environment is no setting given.
        .filter(|id| {
            train.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine)
        })
        .find(|id| id.as_str() != "epochs");
    if let Some(id) = given {
        use clap::CommandFactory;
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "the argument '--resume <RUN>' cannot be used with '--{}': a resumed run \
                     keeps its own config, and only --epochs may carry it on (start a new run \
                     from its weights with --init-from)",
                    id.as_str().replace('_', "-")
                ),
            )
            .exit();
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    // MNIST_MLP_SIMD naming a level this CPU lacks (or none at all) stops every command here.
    mnist_mlp::kernels::simd()?;
    match cli.command {
        Command::Train(args) => train(*args),
        Command::Data(args) => data(args),
        Command::Runs(args) => match args.action {
            None => {
                let dir = args.runs.artifact_dir()?;
                out(&if args.json.json {
                    inspection::runs_json(&dir)?
                } else {
                    inspection::runs(&dir)?
                })?;
                Ok(ExitCode::SUCCESS)
            }
            Some(RunsAction::Prune(args)) => prune(args),
        },
        Command::Inspect(args) => {
            let run = args.run.resolve()?;
            out(&if args.json.json {
                inspection::inspect_json(&run)?
            } else {
                inspection::inspect(&run)?
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Summary(args) => {
            let run = match &args.run {
                Some(run) => Some(RunDir::resolve(&args.runs.artifact_dir()?, run)?),
                None => None,
            };
            out(&if args.json.json {
                inspection::summary_json(run.as_ref())?
            } else {
                inspection::summary(run.as_ref())?
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval(args) => eval(args),
        Command::Predict(args) => predict(args),
        Command::Show(args) => show(args),
        Command::Export(args) => export(args),
        Command::Sweep(command) => sweep_command(command),
        Command::Log(args) => log(args),
        Command::Serve(args) => {
            fault::exit_on_ctrl_c();
            serve::serve(&serve::ServeOptions {
                artifact_dir: args.runs.artifact_dir()?,
                host: args.host,
                port: args.port,
                allow_hosts: args.allow_hosts,
                on: (&args.on).into(),
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn predict(args: PredictArgs) -> Result<ExitCode> {
    let run = args.run.resolve()?;
    let answers = predict::predict_each(
        &run,
        args.checkpoint.checkpoint,
        &args.images,
        (&args.on).into(),
    )?;
    let (table, failed) = predict::report(answers, args.save_input.as_deref(), args.json.json)?;
    out(&table)?;
    // One line per picture that could not be read; the others are answered above.
    for error in &failed {
        eprintln!("error: {error}");
    }
    Ok(failed
        .iter()
        .map(|e| fault::exit_code(e))
        .max()
        .map_or(ExitCode::SUCCESS, ExitCode::from))
}

fn log(args: LogArgs) -> Result<ExitCode> {
    let run = args.run.resolve()?;
    training::tracking::log_recorded(
        &run,
        &training::tracking::LogTargets {
            tensorboard: args.tensorboard,
            mlflow: args.mlflow,
            mlflow_experiment: args.mlflow_experiment,
        },
    )?;
    println!("{}", run.path().display());
    Ok(ExitCode::SUCCESS)
}

fn prune(args: PruneArgs) -> Result<ExitCode> {
    let artifact_dir = args.dir.artifact_dir()?;
    let runs = if args.runs.is_empty() {
        RunDir::list(&artifact_dir)?
    } else {
        args.runs
            .iter()
            .map(|run| RunDir::resolve(&artifact_dir, run))
            .collect::<Result<_, _>>()?
    };
    let options = inspection::prune::PruneOptions {
        keep_last: args.keep_last,
        keep_best: args.keep_best,
        dry_run: args.dry_run,
    };
    out(&inspection::prune::prune(&runs, options)?)?;
    Ok(ExitCode::SUCCESS)
}

fn eval(args: EvalArgs) -> Result<ExitCode> {
    let run = args.run.resolve()?;
    let evaluation = eval::evaluate(
        &run,
        args.checkpoint.checkpoint,
        args.data_dir,
        (&args.on).into(),
    )?;
    if let Some(path) = &args.probabilities {
        eval::write_probabilities(&evaluation, path)?;
    }
    if args.json {
        out(&format!("{}\n", evaluation.to_json()))?;
    } else {
        out(&evaluation.render())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn show(args: ShowArgs) -> Result<ExitCode> {
    let config = args.config.resolve(Overrides::default())?;
    let request = show::ShowRequest {
        split: match args.split {
            SplitArg::Train => show::Split::Train,
            SplitArg::Test => show::Split::Test,
        },
        index: args.index,
        png: args.png.as_deref(),
        grid: args.grid.map(usize::from),
    };
    out(&show::show(&config, &request)?)?;
    Ok(ExitCode::SUCCESS)
}

fn export(args: ExportArgs) -> Result<ExitCode> {
    let run = args.run.resolve()?;
    let format = args.format.map(|format| match format {
        FormatArg::Safetensors => export::Format::Safetensors,
        FormatArg::Onnx => export::Format::Onnx,
    });
    let format = export::choose_format(format, &args.out)?;
    let done = export::export(
        &run,
        args.checkpoint.checkpoint,
        format,
        &args.out,
        args.force,
    )?;
    out(&done.render())?;
    Ok(ExitCode::SUCCESS)
}

/// Prints `text`; a reader that stopped reading (`| head`) is not an error.
fn out(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => Ok(written?),
    }
}

impl RunsArgs {
    /// `--artifact-dir`, else the config's (config/train.toml when it exists). Given the flag,
    /// the config file is not read at all: a broken one must not break reading runs.
    fn artifact_dir(&self) -> Result<PathBuf, ConfigError> {
        if let Some(dir) = &self.artifact_dir {
            return Ok(dir.clone());
        }
        let config = TrainConfig::resolve(
            None,
            &Overrides {
                artifact_dir: self.artifact_dir.clone(),
                ..Default::default()
            },
        )?;
        Ok(config.run.artifact_dir)
    }
}

impl RunArgs {
    fn resolve(&self) -> Result<RunDir> {
        Ok(RunDir::resolve(&self.runs.artifact_dir()?, &self.run)?)
    }
}

impl TrainArgs {
    /// `--verbose N` if given, else `--dashboard`.
    fn dashboard(&self) -> Dashboard {
        match self.verbose {
            Some(0) => Dashboard::None,
            Some(1) => Dashboard::Bar,
            Some(_) => Dashboard::Plain,
            None => self.dashboard.into(),
        }
    }
}

fn train(args: TrainArgs) -> Result<ExitCode> {
    let dashboard = args.dashboard();
    if let Some(run) = &args.resume {
        let epochs = args.settings.epochs;
        let runs = RunsArgs {
            artifact_dir: args.artifact_dir.clone(),
        };
        let run = RunDir::resolve(&runs.artifact_dir()?, run)?;
        let resume = training::Resume {
            data_dir: args.config.data_dir,
            epochs,
        };
        let outcome = training::resume_with(
            &run,
            resume,
            dashboard,
            None,
            mnist_mlp::run_dir::DEFAULT_STALE_AFTER,
        )?;
        return report(outcome);
    }
    let config = args.config.resolve(Overrides {
        settings: args.settings,
        artifact_dir: args.artifact_dir,
        ..Default::default()
    })?;
    let outcome = training::train(&config, dashboard)?;
    report(outcome)
}

/// What `train` prints when training returns.
fn report(outcome: training::TrainOutcome) -> Result<ExitCode> {
    match outcome.resumed_after {
        Some(0) => println!("Resumed from the start: no epoch had a complete checkpoint"),
        Some(after) => println!("Resumed after epoch {after}"),
        None => {}
    }
    if let Some(last) = outcome.history.last() {
        let info = &outcome.info;
        let threads = info.threads.map(|n| format!("{n} threads"));
        let simd = info.simd.map(|s| format!("SIMD {s}"));
        let on: Vec<String> = threads.into_iter().chain(simd).collect();
        println!(
            "Trained {}/{} epochs: loss {:.4} - accuracy {:.4} - val_loss {:.4} - val_accuracy {:.4} ({})",
            info.epochs_done,
            info.epochs_planned,
            last.loss,
            last.accuracy,
            last.val_loss,
            last.val_accuracy,
            on.join(", ")
        );
    }
    if let Some(epoch) = outcome.info.stopped_early {
        println!(
            "Stopped early after epoch {epoch}: {}",
            match outcome.info.restored_epoch {
                Some(best) => format!("the final model has the weights of epoch {best}"),
                None => "the final model has the last epoch's weights".to_string(),
            }
        );
    }
    if outcome.info.status == RunStatus::Interrupted {
        // Where a plain `train --resume` would look now: the environment's, else the config's.
        let default = RunsArgs {
            artifact_dir: std::env::var_os("MNIST_MLP_ARTIFACT_DIR")
                .filter(|dir| !dir.is_empty())
                .map(PathBuf::from),
        }
        .artifact_dir()
        .ok();
        eprintln!(
            "interrupted: {} of {} epochs done and checkpointed; the run is kept; resume it with: {}",
            outcome.info.epochs_done,
            outcome.info.epochs_planned,
            training::resume_command(&outcome.run, default.as_deref())
        );
    }
    println!("{}", outcome.run.path().display());
    Ok(match outcome.info.status {
        RunStatus::Interrupted => ExitCode::from(fault::INTERRUPTED),
        _ => ExitCode::SUCCESS,
    })
}

fn data(args: DataArgs) -> Result<ExitCode> {
    let config = args.config.resolve(Overrides::default())?;
    let mnist = Mnist::load(&config.sources(true))?;
    print!("{}", mnist_mlp::data::describe(&mnist));
    Ok(ExitCode::SUCCESS)
}

impl SweepNameArgs {
    fn resolve(&self) -> Result<Sweep> {
        let runs = RunsArgs {
            artifact_dir: self.artifact_dir.clone(),
        };
        Ok(
            Sweep::resolve(&runs.artifact_dir()?, &self.sweep)?
                .with_stale_after(self.stale_after()),
        )
    }

    fn stale_after(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.stale_after)
    }
}

fn sweep_command(command: SweepCommand) -> Result<ExitCode> {
    match command {
        SweepCommand::Init(args) => {
            let sweep = sweep::init(&args.spec, args.artifact_dir.as_deref())?;
            println!(
                "{} trials in {}",
                sweep.resolved.trials.len(),
                sweep.path().display()
            );
        }
        SweepCommand::Status(args) => {
            let sweep = args.sweep.resolve()?;
            out(&if args.json.json {
                sweep::status_json(&sweep)?
            } else {
                sweep::status(&sweep)?
            })?;
        }
        SweepCommand::Work(args) => {
            let sweep = args.sweep.resolve()?;
            let index = sweep::index_from_env(args.index)?;
            let options = sweep::WorkOptions {
                index: index.map(|(i, _)| i),
                index_source: index.map_or("--index", |(_, source)| source),
                data_dir: args.data_dir,
                dashboard: args.dashboard.into(),
                stale_after: args.sweep.stale_after(),
                poll: std::time::Duration::from_millis(500),
            };
            let report = sweep::work(&sweep, &options, &mut |line| match line {
                sweep::Line::Out(line) => println!("{line}"),
                sweep::Line::Note(line) => eprintln!("{line}"),
            })?;
            if report.interrupted {
                return Ok(ExitCode::from(fault::INTERRUPTED));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
