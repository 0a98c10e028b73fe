//! Module paths come from a trace file, which may be damaged or made up:
//! a path naming a device, a FIFO or a directory is a warning, never an
//! endless read (`/dev/zero` would fill memory) or a wait for a writer.

use memtrace_symbolize::{read_build_id, ModuleSpec, Options, Segment, Symbolizer};

fn spec(path: &str) -> ModuleSpec {
    ModuleSpec {
        path: path.to_string(),
        build_id: None,
        load_bias: 0x1000_0000,
        segments: vec![Segment {
            vaddr: 0,
            memsz: 0x1000,
            executable: true,
        }],
    }
}

/// Symbolizes one address inside a module at `path`; returns the warnings.
fn warnings_for(path: &str) -> Vec<String> {
    let mut symbolizer = Symbolizer::new(Options {
        debug_dirs: Vec::new(),
    });
    symbolizer.add_module(spec(path));
    let location = symbolizer.symbolize(0x1000_0010);
    assert!(location.frames.iter().all(|f| f.function.is_none()));
    symbolizer.warnings().to_vec()
}

#[test]
fn a_device_is_not_read() {
    assert_eq!(
        warnings_for("/dev/zero"),
        ["cannot read /dev/zero: not a regular file; its frames are not symbolized"]
    );
    assert!(read_build_id(std::path::Path::new("/dev/zero")).is_err());
}

#[test]
fn a_fifo_is_not_opened() {
    let dir = std::env::temp_dir().join(format!("memtrace-fifo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo");
    let _ = std::fs::remove_file(&fifo);
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let path = fifo.to_str().unwrap();
    assert_eq!(
        warnings_for(path),
        [format!(
            "cannot read {path}: not a regular file; its frames are not symbolized"
        )]
    );
    assert!(read_build_id(&fifo).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_directory_is_not_read() {
    assert_eq!(
        warnings_for("/"),
        ["cannot read /: not a regular file; its frames are not symbolized"]
    );
}
