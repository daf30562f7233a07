//! The JSON API the page uses (docs/serve.md): the runs, one run, a prediction, a run's files.
//! Every answer is computed by the inspection code the commands use, so the page shows what
//! `runs`, `inspect` and `predict` print.

use crate::batcher;
use crate::data::idx::PIXELS;
use crate::inspection::{self, ComputeOn, InspectError, predict};
use crate::model::Mlp;
use crate::run_dir::{History, RunDir, RunDirError, RunInfo};
use crate::saved::{self, LoadError, Weights};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

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

impl From<InspectError> for ApiError {
    /// A run or checkpoint that is not there is 404, a picture that is not one 400; anything
    /// else went wrong on this side (a run directory that cannot be read): 500.
    fn from(error: InspectError) -> Self {
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

/// The files of a run the page may fetch, by their fixed names, and their media types.
const FILES: [(&str, &str); 6] = [
    ("curves.svg", "image/svg+xml"),
    ("curves.png", "image/png"),
    ("confusion.png", "image/png"),
    ("mistakes.png", "image/png"),
    ("config.toml", "text/plain; charset=utf-8"),
    ("history.csv", "text/csv; charset=utf-8"),
];

/// A weights file as it was when loaded: a changed file (a run still training rewrites `best`'s
/// epoch, a resumed one its checkpoints) is loaded again.
type Stamp = (Option<SystemTime>, u64);

/// What the server knows: where the runs are, where to compute, and the models loaded so far.
pub struct App {
    artifact_dir: PathBuf,
    on: ComputeOn,
    models: Mutex<HashMap<PathBuf, (Stamp, Mlp, burn::tensor::Device)>>,
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
    pub fn new(artifact_dir: PathBuf, on: ComputeOn) -> Self {
        Self {
            artifact_dir,
            on,
            models: Mutex::new(HashMap::new()),
        }
    }

    /// The run called `name`, only ever one listed under `<artifact_dir>/runs/`: a name that
    /// could lead elsewhere (`..`, a separator, an escape) is refused before any file is touched.
    fn run(&self, name: &str) -> Result<RunDir, ApiError> {
        let odd = |c: char| matches!(c, '/' | '\\' | '%' | '\0') || c.is_control();
        if name.is_empty() || name.contains("..") || name.starts_with('.') || name.contains(odd) {
            return Err(ApiError::new(400, format!("{name:?} is not a run name")));
        }
        RunDir::list(&self.artifact_dir)?
            .into_iter()
            .find(|run| run.name() == name)
            .ok_or_else(|| {
                let under = RunDir::runs_dir(&self.artifact_dir);
                ApiError::new(404, format!("{name}: no such run in {}", under.display()))
            })
    }

    /// `GET /api/runs`: every run, newest first, as `runs` lists them.
    pub fn runs(&self) -> Result<Value, ApiError> {
        let rows = inspection::summaries(&self.artifact_dir)
            .map_err(ApiError::from)?
            .into_iter()
            .map(|summary| match &summary.recorded {
                Ok((info, history)) => run_row(&summary.run, info, history),
                Err(e) => json!({
                    "name": summary.run.name(),
                    "status": "unreadable",
                    "error": e.to_string(),
                }),
            })
            .collect();
        Ok(Value::Array(rows))
    }

    /// `GET /api/runs/{name}`: `run.json`, the history, the checkpoints on disk, the config and
    /// which of the run's files are there.
    pub fn run_detail(&self, name: &str) -> Result<Value, ApiError> {
        let run = self.run(name)?;
        let info = run.read_info()?;
        let history = inspection::report::recorded_history(&run, &info)?;
        let epochs = run.model_checkpoint_epochs()?;
        let best = history
            .best_epoch()
            .map(|(epoch, _)| epoch)
            .filter(|e| epochs.contains(e));
        let files: Vec<&str> = FILES
            .iter()
            .map(|(file, _)| *file)
            .filter(|file| run.path().join(file).is_file())
            .collect();
        Ok(json!({
            "row": run_row(&run, &info, &history),
            "run": info,
            "history": history,
            "checkpoints": {
                "epochs": epochs,
                "best": best,
                "last": epochs.last(),
                "final": run.model_path().is_file(),
            },
            "config": std::fs::read_to_string(run.config_path()).ok(),
            "files": files,
        }))
    }

    /// `GET /api/runs/{name}/files/{file}`: one of [`FILES`], and its media type.
    pub fn file(&self, name: &str, file: &str) -> Result<(Vec<u8>, &'static str), ApiError> {
        let Some(&(file, media)) = FILES.iter().find(|(known, _)| *known == file) else {
            return Err(ApiError::new(
                404,
                format!("{file:?} is not a file the page shows"),
            ));
        };
        let run = self.run(name)?;
        let path = run.path().join(file);
        match std::fs::read(&path) {
            Ok(bytes) => Ok((bytes, media)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ApiError::new(
                404,
                format!("{}: not written (yet)", path.display()),
            )),
            Err(e) => Err(ApiError::new(500, format!("{}: {e}", path.display()))),
        }
    }

    /// `POST /api/runs/{name}/predict?checkpoint=…`: the digit and the ten probabilities `predict`
    /// gives for the picture, and the 28×28 levels the model saw.
    pub fn predict(
        &self,
        name: &str,
        checkpoint: Option<&str>,
        picture: Picture<'_>,
    ) -> Result<Value, ApiError> {
        let which = checkpoint
            .map(|c| c.parse::<Weights>().map_err(|e| ApiError::new(404, e)))
            .transpose()?;
        let run = self.run(name)?;
        let image = match picture {
            Picture::Json(body) => pixels(body)?,
            Picture::Png(body) => predict::prepare_bytes(Path::new("the PNG"), body)?,
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
        let stamp = std::fs::metadata(path)
            .map(|m| (m.modified().ok(), m.len()))
            .map_err(|e| ApiError::new(404, format!("{}: {e}", path.display())))?;
        let cached = |models: &HashMap<PathBuf, (Stamp, Mlp, burn::tensor::Device)>| {
            models
                .get(path)
                .filter(|(s, _, _)| *s == stamp)
                .map(|(_, model, device)| (model.clone(), device.clone()))
        };
        if let Some(found) = cached(&self.models.lock().unwrap_or_else(PoisonError::into_inner)) {
            return Ok(found);
        }
        // Loaded outside the lock, so that other checkpoints' requests do not wait for it; two
        // requests for a new file may both load it, and the second one stored wins.
        let config = run.read_config()?;
        let device = self.on.device(&config).map_err(InspectError::from)?;
        let model = saved::load_file(path, &run.read_model_config()?, &device)?;
        self.models
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.to_path_buf(), (stamp, model.clone(), device.clone()));
        Ok((model, device))
    }
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
