//! An HTML page that shows charts: each with a heading, a sentence on what
//! it shows and the command that made it.
//!
//! The page is well-formed XML (so tests can parse it) and carries a small
//! script that, once the page has loaded, writes into the element
//! `#image-check` how many images loaded and which did not
//! (`data-loaded`, `data-broken`), so a broken chart is visible to a reader
//! and to a headless browser alike.

use std::fmt::Write as _;

/// One chart on the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figure {
    /// Image path, relative to the page.
    pub file: String,
    /// The chart's title, as the image shows it: the image's alternative
    /// text.
    pub title: String,
    /// One or two sentences on what the chart shows (may be empty when the
    /// section's text says it).
    pub caption: String,
    /// The command that made it.
    pub command: String,
}

/// A group of figures under a heading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Heading.
    pub heading: String,
    /// A paragraph under the heading (may be empty).
    pub text: String,
    /// The figures.
    pub figures: Vec<Figure>,
}

/// A page of charts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Title and top heading.
    pub title: String,
    /// Paragraphs under the title (plain text).
    pub intro: Vec<String>,
    /// The sections.
    pub sections: Vec<Section>,
}

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}\
figure{margin:2em 0;padding:0}img{max-width:100%;border:1px solid #ddd}\
code{background:#f3f3f3;padding:.1em .3em;border-radius:3px;word-break:break-all}\
nav a{margin-right:1em}#image-check{color:#555;font-size:.9em}";

const CHECK_SCRIPT: &str = "window.addEventListener('load',function(){\
var imgs=document.querySelectorAll('img'),ok=0,bad=[];\
for(var i=0;i<imgs.length;i++){var m=imgs[i];\
if(m.complete&&m.naturalWidth>0){ok++}else{bad.push(m.getAttribute('src'))}}\
var e=document.getElementById('image-check');\
e.setAttribute('data-loaded',String(ok));e.setAttribute('data-broken',bad.join(' '));\
e.textContent=bad.length?('Missing images: '+bad.join(', ')):('All '+ok+' charts loaded.');});";

/// Renders the page.
pub fn html(page: &Page) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "<!DOCTYPE html>");
    let _ = writeln!(out, "<html lang=\"en\">");
    let _ = writeln!(
        out,
        "<head><meta charset=\"utf-8\"/><title>{}</title><style>{STYLE}</style></head>",
        escape(&page.title)
    );
    let _ = writeln!(out, "<body>");
    let _ = writeln!(out, "<h1>{}</h1>", escape(&page.title));
    for p in &page.intro {
        let _ = writeln!(out, "<p>{}</p>", escape(p));
    }
    if page.sections.len() > 1 {
        out.push_str("<nav>");
        for (i, s) in page.sections.iter().enumerate() {
            let _ = write!(out, "<a href=\"#s{i}\">{}</a>", escape(&s.heading));
        }
        out.push_str("</nav>\n");
    }
    for (i, s) in page.sections.iter().enumerate() {
        let _ = writeln!(out, "<h2 id=\"s{i}\">{}</h2>", escape(&s.heading));
        if !s.text.is_empty() {
            let _ = writeln!(out, "<p>{}</p>", escape(&s.text));
        }
        for f in &s.figures {
            // The image carries its title: the page does not repeat it.
            let _ = writeln!(out, "<figure>");
            if !f.caption.is_empty() {
                let _ = writeln!(out, "<p>{}</p>", escape(&f.caption));
            }
            let _ = writeln!(
                out,
                "<img src=\"{}\" alt=\"{}\"/>",
                escape(&f.file),
                escape(&f.title)
            );
            let _ = writeln!(
                out,
                "<figcaption>Made by <code>{}</code></figcaption>",
                escape(&f.command)
            );
            let _ = writeln!(out, "</figure>");
        }
    }
    let _ = writeln!(
        out,
        "<p id=\"image-check\" data-loaded=\"\" data-broken=\"\">Checking the charts...</p>"
    );
    // CDATA keeps the page well-formed XML; to HTML the markers are comments.
    let _ = writeln!(out, "<script>//<![CDATA[\n{CHECK_SCRIPT}\n//]]></script>");
    let _ = writeln!(out, "</body>\n</html>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_well_formed_and_lists_each_figure_with_its_command() {
        let page = Page {
            title: "charts <of> sites".into(),
            intro: vec!["one & two".into()],
            sections: vec![Section {
                heading: "heap".into(),
                text: String::new(),
                figures: vec![Figure {
                    file: "heap.svg".into(),
                    title: "Live heap".into(),
                    caption: "The live heap.".into(),
                    command: "memtrace plot t.trace -o \"x\"".into(),
                }],
            }],
        };
        let text = html(&page);
        let doc = roxmltree::Document::parse_with_options(
            &text,
            roxmltree::ParsingOptions {
                allow_dtd: true,
                ..Default::default()
            },
        )
        .expect("well-formed");
        let imgs: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("img"))
            .filter_map(|n| n.attribute("src"))
            .collect();
        assert_eq!(imgs, ["heap.svg"]);
        let code: Vec<String> = doc
            .descendants()
            .filter(|n| n.has_tag_name("code"))
            .map(|n| n.text().unwrap_or_default().to_string())
            .collect();
        assert_eq!(code, ["memtrace plot t.trace -o \"x\""]);
        let title = doc.descendants().find(|n| n.has_tag_name("h1")).unwrap();
        assert_eq!(title.text(), Some("charts <of> sites"));
        // The figure's title is the image's own, not a heading above it.
        assert!(!doc.descendants().any(|n| n.has_tag_name("h3")));
        let alt = doc.descendants().find(|n| n.has_tag_name("img")).unwrap();
        assert_eq!(alt.attribute("alt"), Some("Live heap"));
    }
}
