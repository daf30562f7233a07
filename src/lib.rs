//! The Keras MNIST MLP tutorial, in Rust on Burn.
//!
//! The modules follow the tutorial's stages:
//! [`data`] (IDX files, where they come from, the Burn `Dataset`) →
//! [`augment`] (training only, off by default: each image redrawn a little differently every
//! epoch) →
//! [`batcher`] (flatten, divide by 255, one-hot) →
//! [`model`] (Dense 512 relu → Dense 512 relu → Dense 10 softmax) →
//! [`training`] (Burn's `Learner` with Keras's RMSprop, metrics, dashboard, checkpoints).
//! [`run_dir`] owns the layout of what a training run records; [`config`] turns the TOML file and
//! the command-line flags into one validated [`config::TrainConfig`]; [`plots`] draws the
//! pictures (training curves, confusion matrix, digits). Weights are read back through [`saved`];
//! [`serve`] shows the runs and a drawing pad in the browser, on top of [`inspection`];
//! [`sweep`] trains many runs of one spec, by several workers at once, and compares them.

pub mod augment;
pub mod backend;
pub mod batcher;
pub mod callbacks;
pub mod config;
pub mod data;
pub mod fault;
pub mod fsutil;
pub mod inspection;
pub mod kernels;
pub mod model;
pub mod optim;
pub mod plots;
pub mod run_dir;
pub mod saved;
pub mod serve;
pub mod sweep;
pub mod table;
pub mod training;
