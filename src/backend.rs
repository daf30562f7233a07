//! The one place that names a Burn backend. Everything else receives a [`Device`].
//!
//! Burn 0.22 picks a backend at run time from the device. With the `train` feature it also
//! compiles the `flex` CPU backend, and `Device::default()` then means flex, so the backend is
//! always chosen explicitly here.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

#[cfg(not(feature = "ndarray"))]
compile_error!("enable the `ndarray` feature (the CPU backend)");

/// A backend compiled into this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Burn's ndarray CPU backend.
    Ndarray,
}

/// A backend that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("unknown backend `{name}`; this build has: {}", Backend::ALL.map(|b| b.name()).join(", "))]
    Unknown { name: String },
    #[error("backend {backend} has no device {index}")]
    NoDevice { backend: &'static str, index: usize },
}

impl BackendError {
    /// Both name a backend or device this build or machine does not have: a usage error.
    pub fn is_bad_input(&self) -> bool {
        match self {
            BackendError::Unknown { .. } | BackendError::NoDevice { .. } => true,
        }
    }
}

impl Backend {
    /// Every backend this build has.
    pub const ALL: [Backend; 1] = [Backend::Ndarray];

    /// The default: the fastest backend compiled in.
    pub fn preferred() -> Self {
        Backend::Ndarray
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Ndarray => "ndarray",
        }
    }

    /// The Burn device for device number `index` of this backend.
    pub fn device(self, index: usize) -> Result<Device, BackendError> {
        match self {
            Backend::Ndarray if index == 0 => {
                // Upstream marks burn-ndarray deprecated in favour of flex; it is still this
                // project's CPU backend (see the README).
                #[allow(deprecated)]
                Ok(Device::ndarray())
            }
            Backend::Ndarray => Err(BackendError::NoDevice {
                backend: self.name(),
                index,
            }),
        }
    }

    /// A human name for the device, recorded with each run.
    pub fn describe_device(self, _index: usize) -> String {
        match self {
            Backend::Ndarray => format!(
                "CPU ({} threads)",
                std::thread::available_parallelism().map_or(1, |n| n.get())
            ),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Backend {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| BackendError::Unknown {
                name: s.to_string(),
            })
    }
}
