//! `mnist-mlp`: the Keras MNIST MLP tutorial, in Rust on Burn.
//!
//! This file only parses arguments and calls the library; see `src/lib.rs`.

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use mnist_mlp::backend::Backend;
use mnist_mlp::config::{ConfigError, Overrides, TrainConfig};
use mnist_mlp::data::Mnist;
use mnist_mlp::fault;
use mnist_mlp::run_dir::RunStatus;
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
    Train(TrainArgs),
    /// Fetch and verify MNIST (without training) and describe it.
    Data(DataArgs),
}

#[derive(clap::Args, Debug)]
struct ConfigArgs {
    /// TOML config file [default: config/train.toml when it exists, else built-in defaults]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Directory holding the four MNIST IDX files (raw or .gz); skips the cache and downloads
    #[arg(long, value_name = "DIR", env = "MNIST_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Mirror base URLs to download MNIST from, comma-separated
    #[arg(long, value_name = "URL", env = "MNIST_MIRROR", value_delimiter = ',')]
    mirror: Option<Vec<String>>,
}

#[derive(clap::Args, Debug)]
struct TrainArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Epochs to train (train.epochs)
    #[arg(long)]
    epochs: Option<usize>,
    /// Samples per gradient step (train.batch_size)
    #[arg(long)]
    batch_size: Option<usize>,
    /// RMSprop learning rate (optimizer.learning_rate)
    #[arg(long, allow_negative_numbers = true)]
    learning_rate: Option<f64>,
    /// Seed for weight initialisation and shuffling (train.seed)
    #[arg(long)]
    seed: Option<u64>,
    /// Where runs are recorded: <DIR>/runs/<name>/ (run.artifact_dir)
    #[arg(long, value_name = "DIR")]
    artifact_dir: Option<PathBuf>,
    /// Name of the run directory [default: the UTC start time]
    #[arg(long, value_name = "NAME")]
    run_name: Option<String>,
    /// Train on the first N training images only
    #[arg(long, value_name = "N")]
    limit_train: Option<usize>,
    /// Validate on the first N validation images only
    #[arg(long, value_name = "N")]
    limit_valid: Option<usize>,
    /// Backend to train on (run.backend)
    #[arg(long, value_parser = parse_backend)]
    backend: Option<Backend>,
    /// Device number within the backend (run.device)
    #[arg(long, value_name = "N")]
    device: Option<usize>,
    /// How to show progress: the terminal dashboard, one line per epoch, or nothing
    #[arg(long, value_enum, default_value_t = DashboardArg::Auto)]
    dashboard: DashboardArg,
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
    /// One Keras-style line per epoch
    Plain,
    /// Only the final summary
    None,
}

fn parse_backend(s: &str) -> Result<Backend, String> {
    s.parse()
        .map_err(|e: mnist_mlp::backend::BackendError| e.to_string())
}

impl From<DashboardArg> for Dashboard {
    fn from(arg: DashboardArg) -> Self {
        match arg {
            DashboardArg::Auto => Dashboard::Auto,
            DashboardArg::Tui => Dashboard::Tui,
            DashboardArg::Plain => Dashboard::Plain,
            DashboardArg::None => Dashboard::None,
        }
    }
}

impl ConfigArgs {
    fn resolve(&self, mut overrides: Overrides) -> Result<TrainConfig, ConfigError> {
        overrides.data_dir.clone_from(&self.data_dir);
        overrides.mirrors.clone_from(&self.mirror);
        TrainConfig::resolve(self.config.as_deref(), &overrides)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            // Every error of this crate already says its cause (`{error:#}` would say it twice).
            eprintln!("error: {error}");
            ExitCode::from(fault::exit_code(&*error))
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Train(args) => train(args),
        Command::Data(args) => data(args),
    }
}

fn train(args: TrainArgs) -> Result<ExitCode> {
    let config = args.config.resolve(Overrides {
        epochs: args.epochs,
        batch_size: args.batch_size,
        learning_rate: args.learning_rate,
        seed: args.seed,
        artifact_dir: args.artifact_dir,
        run_name: args.run_name,
        limit_train: args.limit_train,
        limit_valid: args.limit_valid,
        backend: args.backend,
        device: args.device,
        ..Default::default()
    })?;
    let outcome = training::train(&config, args.dashboard.into())?;
    if let Some(last) = outcome.history.last() {
        println!(
            "Trained {}/{} epochs: loss {:.4} - accuracy {:.4} - val_loss {:.4} - val_accuracy {:.4}",
            outcome.info.epochs_done,
            outcome.info.epochs_planned,
            last.loss,
            last.accuracy,
            last.val_loss,
            last.val_accuracy
        );
    }
    if outcome.info.status == RunStatus::Interrupted {
        eprintln!(
            "interrupted: {} of {} epochs done and checkpointed; the run is kept",
            outcome.info.epochs_done, outcome.info.epochs_planned
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
    let mnist = Mnist::load(&training::sources(&config, true))?;
    print!("{}", mnist_mlp::data::describe(&mnist));
    Ok(ExitCode::SUCCESS)
}
