//! `echo-bench list`: one line per backend.

use crate::backends::BackendName;

/// Prints each backend with its engine, threading model and `--threads` meaning.
pub fn run() {
    for name in BackendName::ALL {
        let d = name.describe();
        println!("{:<10} {}; {}; --threads: {}", name.as_str(), d.engine, d.threading, d.threads_flag);
    }
}
