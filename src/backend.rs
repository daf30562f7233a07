//! The one place that names a Burn backend. Everything else receives a [`Device`].
//!
//! Burn 0.22 picks a backend at run time from the device. With the `train` feature it also
//! compiles the `flex` CPU backend, and with `wgpu` compiled in `Device::default()` means wgpu
//! (on a machine without a GPU: a slow software adapter, or a panic when there is none), so the
//! backend is always chosen explicitly here.
//!
//! Every name parses in every build, so a config file written by a wgpu build still reads in a
//! CPU-only one; choosing a backend this build lacks is an error that says how to get it.
//!
//! ndarray is always compiled: the fused training kernels (`crate::kernels`) extend it, and it
//! is the CPU fallback a wgpu build points users to when no adapter works.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

#[cfg(not(feature = "ndarray"))]
compile_error!("enable the `ndarray` feature (the CPU backend; `wgpu` comes on top of it)");

/// A Burn backend this program can train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Burn's ndarray CPU backend (cargo feature `ndarray`, on by default).
    Ndarray,
    /// Burn's flex CPU backend (always compiled: Burn's `train` feature brings it).
    Flex,
    /// Burn's wgpu backend: Vulkan, Metal, DirectX 12 or OpenGL, whichever the machine has
    /// (cargo feature `wgpu`).
    Wgpu,
}

/// A backend or device that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("unknown backend `{name}`; expected one of: {}", Backend::ALL.map(|b| b.name()).join(", "))]
    Unknown { name: String },
    #[error(
        "backend {backend} is not in this build (it has: {compiled}); rebuild with \
         `cargo build --release --features {backend}`"
    )]
    NotCompiled {
        backend: &'static str,
        compiled: String,
    },
    #[error("backend {backend} has no device {index}; it has {available}")]
    NoDevice {
        backend: &'static str,
        index: usize,
        available: String,
    },
    #[error(
        "no wgpu adapter found: wgpu looked for {apis} adapters and found none. Train on the \
         CPU with `--backend ndarray`, or install a Vulkan driver (Debian/Ubuntu: `apt-get \
         install mesa-vulkan-drivers libvulkan1` gives the software driver lavapipe; for a GPU, \
         its vendor's driver)"
    )]
    NoAdapter { apis: &'static str },
    #[error(
        "wgpu device {index} ({adapter}) does not work: {message}. Train on the CPU with \
         `--backend ndarray`, or install or update its Vulkan driver"
    )]
    Broken {
        index: usize,
        adapter: String,
        message: String,
    },
}

impl BackendError {
    /// Whether the fault is in what was asked for (a flag, the config, the machine's drivers)
    /// rather than in a device that failed while it was being used.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, BackendError::Broken { .. })
    }
}

/// A device, opened and checked, with what it is.
#[derive(Debug, Clone)]
pub struct OpenDevice {
    pub device: Device,
    /// A human name for the device, recorded with each run: for wgpu, the adapter.
    pub description: String,
}

impl Backend {
    /// Every backend name this program knows.
    pub const ALL: [Backend; 3] = [Backend::Ndarray, Backend::Flex, Backend::Wgpu];

    /// The backends compiled into this build.
    pub fn compiled() -> Vec<Backend> {
        Self::ALL.into_iter().filter(|b| b.is_compiled()).collect()
    }

    pub fn is_compiled(self) -> bool {
        match self {
            Backend::Ndarray => cfg!(feature = "ndarray"),
            Backend::Flex => true,
            Backend::Wgpu => cfg!(feature = "wgpu"),
        }
    }

    /// The default: wgpu when it is compiled in, else ndarray.
    pub fn preferred() -> Self {
        if cfg!(feature = "wgpu") {
            Backend::Wgpu
        } else {
            Backend::Ndarray
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Ndarray => "ndarray",
            Backend::Wgpu => "wgpu",
            Backend::Flex => "flex",
        }
    }

    /// The Burn device for device number `index` of this backend.
    pub fn device(self, index: usize) -> Result<Device, BackendError> {
        self.open(index).map(|open| open.device)
    }

    /// Opens device number `index` of this backend and checks that it computes.
    ///
    /// For wgpu, `index` counts the adapters wgpu finds on the graphics API it settles on
    /// (Vulkan where there is one), hardware GPUs first (discrete, integrated, virtual, other),
    /// software adapters such as lavapipe last, so 0 is the best GPU. An adapter is opened once
    /// per process; later calls return the same device.
    pub fn open(self, index: usize) -> Result<OpenDevice, BackendError> {
        if !self.is_compiled() {
            return Err(BackendError::NotCompiled {
                backend: self.name(),
                compiled: Self::compiled()
                    .iter()
                    .map(|b| b.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        match self {
            #[cfg(feature = "ndarray")]
            Backend::Ndarray if index == 0 => Ok(OpenDevice {
                // Upstream marks burn-ndarray deprecated in favour of flex; it is still this
                // project's CPU backend (see the README).
                #[allow(deprecated)]
                device: Device::ndarray(),
                description: cpu_description(),
            }),
            Backend::Flex if index == 0 => Ok(OpenDevice {
                device: Device::flex(),
                description: cpu_description(),
            }),
            Backend::Ndarray | Backend::Flex => Err(BackendError::NoDevice {
                backend: self.name(),
                index,
                available: "only device 0 (the CPU)".into(),
            }),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => wgpu::open(index),
            #[allow(unreachable_patterns)]
            _ => unreachable!("{self} is compiled in"),
        }
    }

    /// A human name for device `index`, recorded with each run (the wgpu adapter's name).
    pub fn describe_device(self, index: usize) -> String {
        match self.open(index) {
            Ok(open) => open.description,
            Err(_) => format!("{self} device {index}"),
        }
    }
}

/// "CPU (2 threads)": what a CPU backend runs on.
fn cpu_description() -> String {
    format!(
        "CPU ({} threads)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    )
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

#[cfg(feature = "wgpu")]
mod wgpu {
    //! Finding and opening a wgpu adapter without panicking.
    //!
    //! Burn opens a wgpu device lazily, at the first tensor operation, and panics there when
    //! there is no adapter (cubecl-wgpu's `WgpuServer::init`: "Unable to acquire wgpu device",
    //! Burn issue #1691's "No adapter found"). So the adapters are listed up front
    //! (`Device::enumerate`, which only asks the graphics APIs, opening nothing) and the chosen
    //! one is opened through cubecl's fallible `try_init_setup`, which reports a missing adapter
    //! or a device that cannot be created as an error. A driver that opens but cannot run
    //! kernels shows only when one runs, and Burn panics then; that one check is contained with
    //! `catch_unwind` (see [`smoke_test`]).

    use super::{BackendError, OpenDevice};
    use burn::backend::wgpu::graphics::AutoGraphicsApi;
    use burn::backend::wgpu::{RuntimeOptions, WgpuDevice, try_init_setup};
    use burn::backend::{CubeDevice, DispatchDevice, WgpuDeviceKind};
    use burn::tensor::{Device, DeviceType, Tensor};
    use std::sync::{Mutex, PoisonError};

    /// The graphics APIs wgpu's automatic choice tries on this platform (cubecl-wgpu's
    /// `AutoGraphicsApi::chain`), for the message when none has an adapter.
    const APIS: &str = if cfg!(target_os = "macos") {
        "Metal"
    } else if cfg!(windows) {
        "Vulkan, DirectX 12 and OpenGL"
    } else {
        "Vulkan and OpenGL"
    };

    /// Devices opened so far, by index: a wgpu runtime can be initialised only once per
    /// process, so a second `open` of the same index returns the first one's device.
    static OPENED: Mutex<Vec<(usize, OpenDevice)>> = Mutex::new(Vec::new());

    pub(super) fn open(index: usize) -> Result<OpenDevice, BackendError> {
        let mut opened = OPENED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, open)) = opened.iter().find(|(i, _)| *i == index) {
            return Ok(open.clone());
        }

        let adapters = adapters();
        if adapters.is_empty() {
            return Err(BackendError::NoAdapter { apis: APIS });
        }
        let Some(selector) = adapters.get(index) else {
            return Err(BackendError::NoDevice {
                backend: "wgpu",
                index,
                available: list(&adapters),
            });
        };
        let broken = |adapter: &str, message: String| BackendError::Broken {
            index,
            adapter: adapter.to_string(),
            message,
        };
        let kind = kind_name(&selector.kind);
        let options = RuntimeOptions::try_default().map_err(|e| broken(kind, e.to_string()))?;
        let setup = try_init_setup::<AutoGraphicsApi>(selector, options)
            .map_err(|e| broken(kind, e.to_string()))?;
        let info = setup.adapter.get_info();
        let device = Device::from(selector.clone());
        smoke_test(&device).map_err(|message| broken(&info.name, message))?;

        let driver = [info.driver.as_str(), info.driver_info.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let open = OpenDevice {
            device,
            description: format!(
                "{} ({:?}, {}, driver: {})",
                info.name,
                setup.backend,
                kind_name(&selector.kind),
                if driver.is_empty() {
                    "unknown"
                } else {
                    &driver
                }
            ),
        };
        opened.push((index, open.clone()));
        Ok(open)
    }

    /// The adapters wgpu finds, hardware GPUs first, each as the selector that opens it.
    fn adapters() -> Vec<WgpuDevice> {
        let mut adapters: Vec<WgpuDevice> = Device::enumerate(DeviceType::Wgpu)
            .iter()
            .filter_map(|device| match device.as_dispatch() {
                DispatchDevice::Cube(CubeDevice::Wgpu(selector)) => Some(selector.clone()),
                _ => None,
            })
            .collect();
        // Stable: within a kind, the graphics API's own order (what the kind's index counts).
        adapters.sort_by_key(|selector| match selector.kind {
            WgpuDeviceKind::DiscreteGpu(_) => 0,
            WgpuDeviceKind::IntegratedGpu(_) => 1,
            WgpuDeviceKind::VirtualGpu(_) => 2,
            WgpuDeviceKind::Other(_) => 3,
            _ => 4,
        });
        adapters
    }

    fn kind_name(kind: &WgpuDeviceKind) -> &'static str {
        match kind {
            WgpuDeviceKind::DiscreteGpu(_) => "discrete GPU",
            WgpuDeviceKind::IntegratedGpu(_) => "integrated GPU",
            WgpuDeviceKind::VirtualGpu(_) => "virtual GPU",
            WgpuDeviceKind::Cpu => "software adapter on the CPU",
            _ => "adapter",
        }
    }

    /// "2 adapters: 0 (discrete GPU), 1 (software adapter on the CPU)".
    fn list(adapters: &[WgpuDevice]) -> String {
        let items: Vec<String> = adapters
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{i} ({})", kind_name(&a.kind)))
            .collect();
        let noun = if items.len() == 1 {
            "adapter"
        } else {
            "adapters"
        };
        format!("{} {noun}: {}", items.len(), items.join(", "))
    }

    /// Runs one small computation on `device` and reads it back. Opening an adapter does not
    /// compile a kernel; a driver that cannot would make Burn panic at the first step of
    /// training instead. The panic is caught here, with the panic hook silenced meanwhile so
    /// that no panic text reaches the user, and becomes the error's message.
    fn smoke_test(device: &Device) -> Result<(), String> {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let x = Tensor::<2>::from_data([[1.0f32, 2.0], [3.0, 4.0]], device);
            (x.clone().matmul(x) + 1.0).try_into_data()
        }));
        std::panic::set_hook(hook);
        let data = match result {
            Ok(Ok(data)) => data,
            Ok(Err(e)) => return Err(format!("reading a result back failed: {e:?}")),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "it panicked".into());
                return Err(format!(
                    "a test computation failed: {}",
                    message.lines().next().unwrap_or_default()
                ));
            }
        };
        match data.try_to_vec::<f32>() {
            Ok(values) if values == [8.0, 11.0, 16.0, 23.0] => Ok(()),
            Ok(values) => Err(format!(
                "a test computation gave {values:?}, not [8, 11, 16, 23]"
            )),
            Err(e) => Err(format!("a test computation gave unreadable data: {e:?}")),
        }
    }
}
