//! Bad input gets one clear line on stderr and a non-zero exit, never a panic.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;

fn fails_with(args: &[&str], dir: &std::path::Path, expected: &str) {
    let out = memtrace().current_dir(dir).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
    assert!(stderr.starts_with("memtrace: "), "{stderr}");
    assert!(stderr.contains(expected), "{args:?}: {stderr}");
}

#[test]
fn a_missing_program_is_named() {
    let dir = scratch("missing");
    fails_with(
        &["run", "--", "no-such-program-xyz"],
        &dir,
        "cannot run no-such-program-xyz: not found in PATH",
    );
    fails_with(
        &["run", "--", "./nope"],
        &dir,
        "cannot run ./nope: no such file",
    );
}

#[test]
fn a_static_binary_is_refused_with_advice() {
    let dir = scratch("static");
    std::fs::write(dir.join("s.c"), "int main(void) { return 0; }\n").unwrap();
    let status = std::process::Command::new("cc")
        .args(["-static", "-o"])
        .arg(dir.join("s"))
        .arg(dir.join("s.c"))
        .status()
        .unwrap();
    assert!(status.success());
    fails_with(
        &["run", "--", "./s"],
        &dir,
        "is statically linked: LD_PRELOAD cannot trace it",
    );
}

#[test]
fn a_setuid_binary_of_another_user_is_refused() {
    let dir = scratch("setuid");
    let copy = dir.join("true-suid");
    std::fs::copy("/bin/true", &copy).unwrap();
    // Owned by nobody (65534) with the setuid bit: the loader would ignore LD_PRELOAD.
    // SAFETY: chown on a path we own; plain libc call.
    let c = std::ffi::CString::new(copy.to_str().unwrap()).unwrap();
    if unsafe { libc_chown(c.as_ptr(), 65534, 65534) } != 0 {
        common::skip(
            "a_setuid_binary_of_another_user_is_refused",
            "cannot chown (not root)",
        );
        return;
    }
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o4755)).unwrap();
    fails_with(&["run", "--", "./true-suid"], &dir, "is setuid/setgid");
}

extern "C" {
    #[link_name = "chown"]
    fn libc_chown(path: *const std::ffi::c_char, uid: u32, gid: u32) -> i32;
}

#[test]
fn an_existing_output_is_never_overwritten() {
    let dir = scratch("exists");
    std::fs::write(dir.join("t.trace"), "precious").unwrap();
    fails_with(
        &["run", "-o", "t.trace", "--", "true"],
        &dir,
        "exists already",
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("t.trace")).unwrap(),
        "precious"
    );
}

#[test]
fn reports_of_bad_files_fail_cleanly() {
    let dir = scratch("badfiles");
    std::fs::write(dir.join("text.trace"), "this is not a trace at all").unwrap();
    fails_with(&["report", "text.trace"], &dir, "not a memtrace trace");
    fails_with(&["report", "absent.trace"], &dir, "No such file");
}

#[test]
fn the_exit_status_and_signals_pass_through() {
    let dir = scratch("status");
    let out = memtrace()
        .current_dir(&dir)
        .args(["run", "-q", "--", "sh", "-c", "exit 7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    let out = memtrace()
        .current_dir(&dir)
        .args(["run", "-q", "--", "sh", "-c", "kill -TERM $$"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(128 + 15));
}

#[test]
fn traces_are_new_files_of_mode_0600_and_symlinks_are_never_followed() {
    use std::os::unix::fs::symlink;
    let dir = scratch("trace-files");
    let cache = dir.join("cache");
    let run = |args: &[&str]| {
        memtrace()
            .current_dir(&dir)
            .env("XDG_CACHE_HOME", &cache)
            .args(args)
            .output()
            .unwrap()
    };
    // A new trace is created with mode 0600.
    let out = run(&["run", "-q", "-o", "new.trace", "--", "sh", "-c", "echo x"]);
    assert_eq!(out.status.code(), Some(0));
    let mode = std::fs::metadata(dir.join("new.trace"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // A dangling symlink as the output: memtrace run refuses it...
    symlink(dir.join("target.trace"), dir.join("link.trace")).unwrap();
    fails_with(
        &["run", "-o", "link.trace", "--", "true"],
        &dir,
        "exists already",
    );
    assert!(!dir.join("target.trace").exists());

    // ...and so does the recorder itself when the preload library is used
    // directly: the program runs on, unrecorded, and the link's target is
    // never created.
    let preload = std::fs::read_dir(cache.join("memtrace"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "so"))
        .expect("memtrace run wrote the preload library to the cache");
    let out = std::process::Command::new("sh")
        .args(["-c", "echo x"])
        .current_dir(&dir)
        .env("LD_PRELOAD", &preload)
        .env("MEMTRACE_OUTPUT", dir.join("link.trace"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout, b"x\n");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        err,
        format!(
            "memtrace: cannot create the trace file: {}: File exists (os error 17); \
             recording stopped, the program continues\n",
            dir.join("link.trace").display()
        )
    );
    assert!(!dir.join("target.trace").exists());
}
