//! Opens an HTML page in headless Chromium: takes a screenshot, and reads
//! back from the rendered DOM whether every image loaded.
//!
//! The page must carry `memtrace_plot::page`'s check: an element
//! `id="image-check"` whose `data-loaded` and `data-broken` attributes a
//! script fills in on the `load` event. Only the standard library is used,
//! so the end-to-end tests include this file as well (`#[path]`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the browser saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCheck {
    /// Images that loaded (complete, with a natural width above zero).
    pub loaded: usize,
    /// `src` of each image that did not.
    pub broken: Vec<String>,
}

/// The Chromium executable in `PATH` (Debian's `chromium`, or a
/// `chromium-browser` / `google-chrome`), if any.
pub fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// A fresh, empty profile directory for one browser run.
fn fresh_profile() -> Result<PathBuf, String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "memtrace-chromium-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Runs headless Chromium on `page` with `extra` arguments; its stdout.
fn run_chromium(
    chromium: &Path,
    page: &Path,
    window: (u32, u32),
    extra: &[String],
) -> Result<String, String> {
    let profile = fresh_profile()?;
    let page = page
        .canonicalize()
        .map_err(|e| format!("{}: {e}", page.display()))?;
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        // Let the load event and its script run before the dump or screenshot.
        "--virtual-time-budget=10000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--window-size={},{}", window.0, window.1))
    .args(extra)
    .arg(format!("file://{}", page.display()))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", chromium.display()))?;
    // Read stdout on a thread so that a large DOM cannot block the browser.
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let mut stderr = child.stderr.take().expect("piped");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&profile);
            return Err("chromium did not finish within 90 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    let _ = std::fs::remove_dir_all(&profile);
    if !status.success() {
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        return Err(format!(
            "chromium exited with {status}: {}",
            tail.join(" | ")
        ));
    }
    Ok(out)
}

/// The value of attribute `name` in the first tag that has `id="ID"`.
fn attribute(dom: &str, id: &str, name: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let tag_start = dom[..at].rfind('<')?;
    let tag_end = at + dom[at..].find('>')?;
    let tag = &dom[tag_start..tag_end];
    let key = format!("{name}=\"");
    let v = tag.find(&key)? + key.len();
    let end = v + tag[v..].find('"')?;
    Some(tag[v..end].replace("&amp;", "&"))
}

/// Loads `page` and returns the DOM as its scripts left it.
pub fn rendered_dom(chromium: &Path, page: &Path, window: (u32, u32)) -> Result<String, String> {
    run_chromium(chromium, page, window, &["--dump-dom".to_string()])
}

/// The value of attribute `name` of the element `id="ID"` in a dumped DOM.
pub fn dom_attribute(dom: &str, id: &str, name: &str) -> Option<String> {
    attribute(dom, id, name)
}

/// Loads `page`, writes a screenshot of the top `window` to `screenshot`,
/// and returns which images loaded.
pub fn check_page(
    chromium: &Path,
    page: &Path,
    screenshot: &Path,
    window: (u32, u32),
) -> Result<PageCheck, String> {
    let dom = run_chromium(chromium, page, window, &["--dump-dom".to_string()])?;
    let loaded = attribute(&dom, "image-check", "data-loaded")
        .ok_or("the page has no #image-check element")?;
    let loaded: usize = loaded
        .parse()
        .map_err(|_| format!("the page's image check did not run (data-loaded={loaded:?})"))?;
    let broken = attribute(&dom, "image-check", "data-broken")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let shot = screenshot
        .canonicalize()
        .unwrap_or_else(|_| screenshot.to_path_buf());
    let _ = std::fs::remove_file(&shot);
    run_chromium(
        chromium,
        page,
        window,
        &[format!("--screenshot={}", shot.display())],
    )?;
    if !shot.is_file() {
        return Err(format!("chromium wrote no screenshot {}", shot.display()));
    }
    Ok(PageCheck { loaded, broken })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_read_from_the_tag_with_the_id() {
        let dom = r#"<p id="x" data-loaded="1"></p><p data-broken="a.svg b.svg" id="image-check" data-loaded="12">"#;
        assert_eq!(
            attribute(dom, "image-check", "data-loaded").as_deref(),
            Some("12")
        );
        assert_eq!(
            attribute(dom, "image-check", "data-broken").as_deref(),
            Some("a.svg b.svg")
        );
        assert_eq!(attribute(dom, "none", "data-loaded"), None);
    }
}
