//! The JSON API the page uses (docs/serve.md): the runs, one run, a prediction, a run's files
//! (the sweeps are in [`super::sweeps`]). Every answer is computed by the inspection code the
//! commands use, so the page shows what `runs`, `inspect` and `predict` print.

use super::files::{FileFault, Inside};
use crate::batcher;
use crate::data::idx::PIXELS;
use crate::fsutil::Refused;
use crate::inspection::{self, ComputeOn, InspectError, predict};
use crate::model::Mlp;
use crate::run_dir::{History, MAX_RECORD, MAX_WEIGHTS, RunDir, RunDirError, RunInfo};
use crate::saved::{self, LoadError, Weights};
use crate::sweep::{Sweep, SweepError, sweeps_dir};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

/// The largest side of a picture sent to predict: the pad is 280×280, and a picture is decoded
/// whole, so a 16384² one (the CLI's cap) costs 1.6 GB of memory and seconds of CPU; 2048² at
/// most 32 MiB. Checked from the header, before decoding.
pub const MAX_PICTURE_SIDE: u32 = 2048;
/// The largest picture or CSV of a run served (curves, eval's pictures: a few hundred KiB).
/// Records are read up to [`MAX_RECORD`], weights up to [`MAX_WEIGHTS`].
const MAX_PAGE_FILE: u64 = 64 << 20;

/// A request the server cannot answer as asked: the HTTP status and why, sent as
/// `{"error": message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// The refusal of a file (a symlink, a FIFO, a hard link, too large) somewhere in `error`'s
/// chain, if one is why it failed.
pub(super) fn refused_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(refused) = error.downcast_ref::<std::io::Error>().and_then(Refused::of) {
            return Some(refused);
        }
        next = error.source();
    }
    None
}

/// A refused file as an answer: 403, naming the file and why.
fn refusal(error: &(dyn std::error::Error + 'static)) -> Option<ApiError> {
    refused_in(error).map(|refused| ApiError::new(403, refused.to_string()))
}

/// Why `error` happened, as the page says it: the file refused and why, else the error.
pub(super) fn described(error: &(dyn std::error::Error + 'static)) -> String {
    refused_in(error).map_or_else(|| error.to_string(), Refused::to_string)
}

impl From<InspectError> for ApiError {
    /// A run or checkpoint that is not there is 404, a picture that is not one 400, a file
    /// refused 403; anything else went wrong on this side (a run directory that cannot be
    /// read): 500.
    fn from(error: InspectError) -> Self {
        if let Some(refused) = refusal(&error) {
            return refused;
        }
        let status = match &error {
            InspectError::RunDir(RunDirError::Unknown { .. } | RunDirError::NotARun { .. })
            | InspectError::Load(LoadError::Missing { .. } | LoadError::NoCheckpoint { .. }) => 404,
            InspectError::Image { .. } => 400,
            _ => 500,
        };
        Self::new(status, error.to_string())
    }
}

impl From<RunDirError> for ApiError {
    fn from(error: RunDirError) -> Self {
        InspectError::from(error).into()
    }
}

impl From<LoadError> for ApiError {
    fn from(error: LoadError) -> Self {
        InspectError::from(error).into()
    }
}

impl From<SweepError> for ApiError {
    /// A sweep that is not there is 404; one that cannot be read (a bad `sweep.toml`, a trial's
    /// unreadable run) 500.
    fn from(error: SweepError) -> Self {
        if let Some(refused) = refusal(&error) {
            return refused;
        }
        let status = match &error {
            SweepError::Unknown { .. } => 404,
            _ => 500,
        };
        Self::new(status, error.to_string())
    }
}

impl From<FileFault> for ApiError {
    /// A file not there is 404; one refused (a symlink on the way, not regular, linked
    /// elsewhere, too large) 403; the rest 500.
    fn from(fault: FileFault) -> Self {
        let status = match &fault {
            FileFault::Missing(_) => 404,
            FileFault::Refused { .. } => 403,
            FileFault::Io { .. } => 500,
        };
        Self::new(status, fault.to_string())
    }
}

/// A run's file, as [`RunDir`] names it.
type RunFile = fn(&RunDir) -> PathBuf;

/// The files of a run the page may fetch, and their media types; the page asks for them by
/// their file names.
const FILES: [(RunFile, &str); 6] = [
    (RunDir::curves_svg_path, "image/svg+xml"),
    (RunDir::curves_png_path, "image/png"),
    (RunDir::confusion_png_path, "image/png"),
    (RunDir::mistakes_png_path, "image/png"),
    (RunDir::config_path, "text/plain; charset=utf-8"),
    (RunDir::history_csv_path, "text/csv; charset=utf-8"),
];

/// The name the page asks `file` of a run by.
fn file_name(file: RunFile) -> String {
    file(&RunDir::open(""))
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Which run a request names: `runs/<name>` of the artifact directory, or, with `sweep`, the
/// trial `<name>` of `sweeps/<sweep>/runs/`. Taken from the route's path.
#[derive(Debug, serde::Deserialize)]
pub struct RunAt {
    #[serde(default)]
    pub sweep: Option<String>,
    pub name: String,
}

/// The most bytes of weights the model cache holds (4 bytes a parameter): the least recently
/// used models are dropped to stay within it; a model larger than it is used and not kept.
/// The tutorial's model is 2.7 MB, so a few dozen fit.
pub const MODEL_CACHE_BYTES: u64 = 128 << 20;

/// A weights file as it was when loaded: a changed file (a run still training rewrites `best`'s
/// epoch, a resumed one its checkpoints) is loaded again.
type Stamp = (Option<SystemTime>, u64);

/// What the server knows: where the runs are, where to compute, and the models loaded so far.
pub struct App {
    /// Absolute, so that every path in an error starts with it and [`App::relative`] can take
    /// it out.
    pub(super) artifact_dir: PathBuf,
    pub(super) inside: Inside,
    on: ComputeOn,
    models: Mutex<ModelCache>,
}

/// Loaded models by file, least recently used out past [`MODEL_CACHE_BYTES`].
#[derive(Default)]
struct ModelCache {
    models: HashMap<PathBuf, Cached>,
    bytes: u64,
    /// Counts uses, to order them.
    clock: u64,
}

struct Cached {
    stamp: Stamp,
    model: Mlp,
    device: burn::tensor::Device,
    bytes: u64,
    used: u64,
}

impl ModelCache {
    /// The model of `path` as it was at `stamp`, marked used.
    fn get(&mut self, path: &Path, stamp: Stamp) -> Option<(Mlp, burn::tensor::Device)> {
        self.clock += 1;
        let clock = self.clock;
        let cached = self.models.get_mut(path).filter(|c| c.stamp == stamp)?;
        cached.used = clock;
        Some((cached.model.clone(), cached.device.clone()))
    }

    /// Keeps `model` of `path`, dropping the least recently used to stay within
    /// [`MODEL_CACHE_BYTES`]; one larger than that is not kept.
    fn put(
        &mut self,
        path: &Path,
        stamp: Stamp,
        model: Mlp,
        device: burn::tensor::Device,
        bytes: u64,
    ) {
        if let Some(old) = self.models.remove(path) {
            self.bytes -= old.bytes;
        }
        if bytes > MODEL_CACHE_BYTES {
            return;
        }
        while self.bytes + bytes > MODEL_CACHE_BYTES {
            let Some(oldest) = self
                .models
                .iter()
                .min_by_key(|(_, c)| c.used)
                .map(|(p, _)| p.clone())
            else {
                break;
            };
            if let Some(old) = self.models.remove(&oldest) {
                self.bytes -= old.bytes;
            }
        }
        self.clock += 1;
        self.bytes += bytes;
        let used = self.clock;
        let cached = Cached {
            stamp,
            model,
            device,
            bytes,
            used,
        };
        self.models.insert(path.to_path_buf(), cached);
    }
}

/// The body of a predict request.
pub enum Picture<'a> {
    /// `{"pixels": [784 numbers in 0..1]}`.
    Json(&'a [u8]),
    /// A PNG, prepared as `predict` prepares a picture file.
    Png(&'a [u8]),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PixelsBody {
    pixels: Vec<f64>,
}

impl App {
    pub fn new(artifact_dir: &Path, on: ComputeOn) -> Self {
        let artifact_dir =
            std::path::absolute(artifact_dir).unwrap_or_else(|_| artifact_dir.to_path_buf());
        Self {
            inside: Inside::new(artifact_dir.clone()),
            artifact_dir,
            on,
            models: Mutex::new(ModelCache::default()),
        }
    }

    /// `message` with the artifact directory taken out of its paths: answers name a run's files
    /// relative to it (`runs/tiny/config.toml`), never where they are on this machine.
    pub fn relative(&self, message: &str) -> String {
        let mut roots = vec![self.artifact_dir.clone()];
        roots.extend(std::fs::canonicalize(&self.artifact_dir).ok());
        roots.iter().fold(message.to_string(), |text, root| {
            let root = root.display().to_string();
            text.replace(&format!("{root}/"), "")
                .replace(&root, "the artifact directory")
        })
    }

    /// The run `at` names, only ever one listed under `<artifact_dir>/runs/` or under the
    /// `runs/` of a sweep listed under `<artifact_dir>/sweeps/`: a name that could lead
    /// elsewhere (`..`, a separator, an escape) is refused before any file is touched.
    pub(super) fn run(&self, at: &RunAt) -> Result<RunDir, ApiError> {
        let name = &at.name;
        check_name(name, "run")?;
        let (base, place) = match &at.sweep {
            None => (self.artifact_dir.clone(), "runs/".to_string()),
            Some(sweep) => (self.sweep_dir(sweep)?, format!("sweeps/{sweep}/runs/")),
        };
        RunDir::list_by(&base, self.inside.reader())?
            .into_iter()
            .find(|run| run.name() == *name)
            .ok_or_else(|| ApiError::new(404, format!("{name}: no such run in {place}")))
    }

    /// The directory of the sweep called `name`, only ever one listed under
    /// `<artifact_dir>/sweeps/`, with names checked as run names are.
    pub(super) fn sweep_dir(&self, name: &str) -> Result<PathBuf, ApiError> {
        check_name(name, "sweep")?;
        if !Sweep::list(&self.artifact_dir)?.iter().any(|n| n == name) {
            return Err(ApiError::new(
                404,
                format!("{name}: no such sweep in sweeps/"),
            ));
        }
        Ok(sweeps_dir(&self.artifact_dir).join(name))
    }

    /// `GET /api/runs`: every run, newest first, as `runs` lists them.
    pub fn runs(&self) -> Result<Value, ApiError> {
        let unreadable = |name: String, error: &str| {
            json!({
                "name": name,
                "status": "unreadable",
                "error": self.relative(error),
            })
        };
        let runs = RunDir::list_by(&self.artifact_dir, self.inside.reader())?;
        let rows: Vec<Value> = inspection::summaries_of(runs)
            .into_iter()
            .map(|summary| match &summary.recorded {
                Ok((info, history)) => run_row(&summary.run, info, history),
                Err(e) => unreadable(summary.run.name(), &described(e)),
            })
            .collect();
        Ok(Value::Array(rows))
    }

    /// `GET /api/runs/{name}`: `run.json`, the history, the checkpoints on disk, the config and
    /// which of the run's files are there.
    pub fn run_detail(&self, at: &RunAt) -> Result<Value, ApiError> {
        let run = self.run(at)?;
        let info = run.read_info()?;
        let history = inspection::report::recorded_history(&run, &info)?;
        let epochs = run.model_checkpoint_epochs()?;
        let best = history
            .best_epoch()
            .map(|(epoch, _)| epoch)
            .filter(|e| epochs.contains(e));
        let files: Vec<String> = FILES
            .iter()
            .filter(|(file, _)| self.inside.readable(&file(&run), MAX_PAGE_FILE))
            .map(|(file, _)| file_name(*file))
            .collect();
        // Shown as text: not shown when it is not a file the server reads.
        let config = self
            .inside
            .read(&run.config_path(), MAX_RECORD)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        Ok(json!({
            "row": run_row(&run, &info, &history),
            "run": info,
            "history": history,
            "checkpoints": {
                "epochs": epochs,
                "best": best,
                "last": epochs.last(),
                "final": run.has_file(&run.model_path()),
            },
            "config": config,
            "files": files,
        }))
    }

    /// `GET /api/runs/{name}/files/{file}`: one of [`FILES`], and its media type.
    pub fn file(&self, at: &RunAt, file: &str) -> Result<(Vec<u8>, &'static str), ApiError> {
        let Some(&(path_of, media)) = FILES.iter().find(|(known, _)| file_name(*known) == file)
        else {
            return Err(ApiError::new(
                404,
                format!("{file:?} is not a file the page shows"),
            ));
        };
        let run = self.run(at)?;
        Ok((self.inside.read(&path_of(&run), MAX_PAGE_FILE)?, media))
    }

    /// `POST /api/runs/{name}/predict?checkpoint=…`: the digit and the ten probabilities `predict`
    /// gives for the picture, and the 28×28 levels the model saw.
    pub fn predict(
        &self,
        at: &RunAt,
        checkpoint: Option<&str>,
        picture: Picture<'_>,
    ) -> Result<Value, ApiError> {
        let which = checkpoint
            .map(|c| c.parse::<Weights>().map_err(|e| ApiError::new(404, e)))
            .transpose()?;
        let run = self.run(at)?;
        let image = match picture {
            Picture::Json(body) => pixels(body)?,
            Picture::Png(body) => {
                predict::prepare_bytes(Path::new("the PNG"), body, MAX_PICTURE_SIDE)?
            }
        };
        let (path, epoch) = saved::locate(&run, which)?;
        let (model, device) = self.model(&run, &path)?;
        let probabilities = predict::classify(&model, &[image], &device)?
            .pop()
            .ok_or_else(|| ApiError::new(500, "the model gave no output"))?;
        let file = path.strip_prefix(run.path()).unwrap_or(&path);
        Ok(json!({
            "digit": inspection::eval::argmax(&probabilities),
            "probabilities": probabilities,
            "checkpoint": {"epoch": epoch, "file": file},
            "input": image.to_vec(),
        }))
    }

    /// The model in `path` of `run`, loaded once per file (and again when the file changes).
    fn model(&self, run: &RunDir, path: &Path) -> Result<(Mlp, burn::tensor::Device), ApiError> {
        // Opened once: the stamp is the open file's, and a new model is read from it.
        let opened = run
            .reader()
            .open(path, MAX_WEIGHTS)
            .map_err(|e| self.inside.fault(path, e))?;
        let stamp = (opened.meta.modified().ok(), opened.meta.len());
        let cache = || self.models.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = cache().get(path, stamp) {
            return Ok(found);
        }
        // Loaded outside the lock, so that other checkpoints' requests do not wait for it; two
        // requests for a new file may both load it, and the second one stored wins.
        let config = run.read_config()?;
        let device = self.on.device(&config).map_err(InspectError::from)?;
        let shape = run.read_model_config()?;
        let model = saved::load_opened(opened, path, &shape, &device)?;
        let bytes = shape.num_params() as u64 * 4;
        cache().put(path, stamp, model.clone(), device.clone(), bytes);
        Ok((model, device))
    }
}

/// Refuses a run or sweep `name` that is not plain ([`crate::config::is_plain_name`], the check
/// `train` and `sweep init` make of the names they record), so could lead elsewhere.
fn check_name(name: &str, what: &str) -> Result<(), ApiError> {
    if !crate::config::is_plain_name(name) {
        return Err(ApiError::new(400, format!("{name:?} is not a {what} name")));
    }
    Ok(())
}

/// The 8-bit image of a `{"pixels": […]}` body: 784 finite numbers in 0..1, row-major.
fn pixels(body: &[u8]) -> Result<[u8; PIXELS], ApiError> {
    let body: PixelsBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            400,
            format!("not a {{\"pixels\": [784 numbers]}} body: {e}"),
        )
    })?;
    let pixels: [f64; PIXELS] = body.pixels.try_into().map_err(|p: Vec<f64>| {
        ApiError::new(
            400,
            format!("{} pixels: expected {PIXELS} (28×28, row-major)", p.len()),
        )
    })?;
    if let Some((i, p)) = pixels
        .iter()
        .enumerate()
        .find(|(_, p)| !(0.0..=1.0).contains(*p))
    {
        return Err(ApiError::new(
            400,
            format!("pixel {i} is {p}: pixels are numbers from 0 to 1"),
        ));
    }
    Ok(batcher::levels(&pixels))
}

/// A run as `runs` lists it: status, epochs, the last epoch's metrics, the best val_accuracy.
fn run_row(run: &RunDir, info: &RunInfo, history: &History) -> Value {
    let last = history.last();
    let best = history.best_epoch();
    json!({
        "name": run.name(),
        "started": info.started,
        "status": info.effective_status(),
        "live": info.is_live(),
        "epochs_done": info.epochs_done,
        "epochs_planned": info.epochs_planned,
        "backend": info.backend,
        "loss": last.map(|m| m.loss),
        "accuracy": last.map(|m| m.accuracy),
        "val_loss": last.map(|m| m.val_loss),
        "val_accuracy": last.map(|m| m.val_accuracy),
        "best_val_accuracy": best.map(|(_, v)| v),
        "best_epoch": best.map(|(e, _)| e),
    })
}
