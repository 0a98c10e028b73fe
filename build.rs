//! Builds the preload library (release) and embeds it in the `memtrace`
//! binary, so an installed `memtrace` needs no file beside it.
//!
//! `MEMTRACE_PRELOAD_SO=/path/lib.so` embeds a prebuilt library instead.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=MEMTRACE_PRELOAD_SO");
    for dir in [
        "crates/preload",
        "crates/recorder",
        "crates/format",
        "crates/unwind",
        "crates/counters",
    ] {
        println!("cargo:rerun-if-changed={dir}/src");
        println!("cargo:rerun-if-changed={dir}/Cargo.toml");
    }
    println!("cargo:rerun-if-changed=Cargo.lock");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let embedded = out_dir.join("libmemtrace_preload.so");

    let built = match env::var_os("MEMTRACE_PRELOAD_SO") {
        Some(path) => PathBuf::from(path),
        None => {
            let manifest_dir =
                PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
            let target_dir = out_dir.join("preload-target");
            let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .args([
                    "build",
                    "--release",
                    "--package",
                    "memtrace-preload",
                    "--target-dir",
                ])
                .arg(&target_dir)
                .arg("--manifest-path")
                .arg(manifest_dir.join("Cargo.toml"))
                .env_remove("RUSTC_WORKSPACE_WRAPPER")
                .env_remove("RUSTC_WRAPPER")
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("CARGO_BUILD_TARGET_DIR")
                .status()
                .expect("cannot run cargo to build the preload library");
            assert!(status.success(), "building memtrace-preload failed");
            target_dir.join("release/libmemtrace_preload.so")
        }
    };
    std::fs::copy(&built, &embedded)
        .unwrap_or_else(|e| panic!("cannot copy {}: {e}", built.display()));
}
