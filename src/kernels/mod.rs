//! The registry of built-in kernels.
//!
//! A spec names a kernel by its [`Kernel::name`]; [`find`] resolves it. Adding a kernel
//! means implementing [`Kernel`] in a module here and listing it in [`all`].

use crate::kernel::Kernel;

pub mod command;
pub mod io;
pub mod mock;

/// Every built-in kernel, in the order `list` shows them.
pub fn all() -> Vec<&'static dyn Kernel> {
    vec![&command::Command, &io::Io, &mock::Mock]
}

pub fn find(name: &str) -> Option<&'static dyn Kernel> {
    all().into_iter().find(|kernel| kernel.name() == name)
}

pub fn names() -> Vec<&'static str> {
    all().iter().map(|kernel| kernel.name()).collect()
}
