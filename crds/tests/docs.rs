//! The repository's own documentation holds together, without a cluster: every relative link in README.md and
//! docs/*.md resolves (the file exists, and an anchor names a heading in it), and every `make <target>` they show
//! is a target of the Makefile. (The YAML examples in docs/ are checked against the API server by
//! e2e/tests/docs.rs.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crds/ sits in the repository root")
        .to_path_buf()
}

/// README.md and every Markdown file of docs/, with their text.
fn documents() -> Vec<(PathBuf, String)> {
    let root = repo_root();
    let mut paths = vec![root.join("README.md")];
    let docs = root.join("docs");
    let mut in_docs: Vec<PathBuf> = std::fs::read_dir(&docs)
        .unwrap_or_else(|e| panic!("{}: {e}", docs.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    in_docs.sort();
    paths.extend(in_docs);
    paths
        .into_iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, text)
        })
        .collect()
}

/// A line of a Markdown file and whether it is code (a fenced block, or indented by four spaces after a blank
/// line or another code line).
struct Line<'a> {
    number: usize,
    text: &'a str,
    code: bool,
}

fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut fence: Option<&str> = None;
    let mut previous_blank_or_code = true;
    for (i, text) in text.lines().enumerate() {
        let trimmed = text.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        let code = match (fence, marker) {
            (Some(open), Some(m)) if m == open => {
                fence = None;
                true
            }
            (Some(_), _) => true,
            (None, Some(m)) => {
                fence = Some(m);
                true
            }
            (None, None) => {
                text.starts_with("    ") && previous_blank_or_code && !trimmed.starts_with("- ")
            }
        };
        previous_blank_or_code =
            text.trim().is_empty() || (code && fence.is_none() && marker.is_none());
        out.push(Line {
            number: i + 1,
            text,
            code,
        });
    }
    out
}

/// The line without its inline code spans (`...`), and the spans.
fn split_code_spans(line: &str) -> (String, Vec<&str>) {
    let mut prose = String::new();
    let mut spans = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        let ticks = rest[start..].chars().take_while(|c| *c == '`').count();
        let fence = &rest[start..start + ticks];
        let after = &rest[start + ticks..];
        match after.find(fence) {
            Some(end) => {
                prose.push_str(&rest[..start]);
                spans.push(after[..end].trim());
                rest = &after[end + ticks..];
            }
            None => break,
        }
    }
    prose.push_str(rest);
    (prose, spans)
}

/// The targets of `[text](target)` links and `[label]: target` definitions in prose.
fn link_targets(prose: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = prose;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let Some(end) = after.find(')') else { break };
        // `[text](target "title")`: the target is the first word.
        if let Some(target) = after[..end].split_whitespace().next() {
            targets.push(target.trim_matches(['<', '>']).to_string());
        }
        rest = &after[end..];
    }
    let trimmed = prose.trim_start();
    if trimmed.starts_with('[')
        && let Some((label, target)) = trimmed.split_once("]:")
        && !label.contains(']')
        && let Some(target) = target.split_whitespace().next()
    {
        targets.push(target.to_string());
    }
    targets
}

/// GitHub's anchor of a heading: lowercase, punctuation dropped (but `-` and `_`), spaces as `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors a Markdown file offers: one per heading (repeats get `-1`, `-2`, ... as on GitHub).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for line in lines(text).iter().filter(|l| !l.code) {
        let hashes = line.text.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&hashes) || !line.text[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line.text[hashes..]);
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

fn is_external(target: &str) -> bool {
    target.contains("://") || target.starts_with("mailto:")
}

/// Every broken relative link of the documents, as `file:line: why`.
fn broken_links(documents: &[(PathBuf, String)]) -> (Vec<String>, usize) {
    let root = repo_root();
    let mut broken = Vec::new();
    let mut checked = 0;
    for (path, text) in documents {
        let shown = path
            .strip_prefix(&root)
            .unwrap_or(path)
            .display()
            .to_string();
        for line in lines(text).iter().filter(|l| !l.code) {
            let (prose, _) = split_code_spans(line.text);
            for target in link_targets(&prose) {
                if is_external(&target) {
                    continue;
                }
                checked += 1;
                let (file, anchor) = match target.split_once('#') {
                    Some((file, anchor)) => (file, Some(anchor)),
                    None => (target.as_str(), None),
                };
                let resolved = if file.is_empty() {
                    path.clone()
                } else {
                    path.parent().expect("a file has a folder").join(file)
                };
                let at = format!("{shown}:{}", line.number);
                if !resolved.exists() {
                    broken.push(format!(
                        "{at}: {target}: {} does not exist",
                        resolved.display()
                    ));
                    continue;
                }
                let Some(anchor) = anchor else { continue };
                if resolved.extension().is_none_or(|x| x != "md") {
                    broken.push(format!(
                        "{at}: {target}: an anchor into a file that is not Markdown"
                    ));
                    continue;
                }
                let target_text = std::fs::read_to_string(&resolved)
                    .unwrap_or_else(|e| panic!("{}: {e}", resolved.display()));
                if !anchors(&target_text).contains(anchor) {
                    broken.push(format!(
                        "{at}: {target}: no heading of {file_shown} has the anchor #{anchor}",
                        file_shown = if file.is_empty() {
                            shown.as_str()
                        } else {
                            file
                        }
                    ));
                }
            }
        }
    }
    (broken, checked)
}

/// The targets named by `make <target> ...` in code: inline code spans and code lines.
fn make_invocations(documents: &[(PathBuf, String)]) -> Vec<(String, usize, String)> {
    let root = repo_root();
    let mut found = Vec::new();
    for (path, text) in documents {
        let shown = path
            .strip_prefix(&root)
            .unwrap_or(path)
            .display()
            .to_string();
        for line in lines(text) {
            let snippets: Vec<&str> = if line.code {
                vec![line.text.trim().trim_start_matches("$ ")]
            } else {
                split_code_spans(line.text).1
            };
            for snippet in snippets {
                let mut words = snippet.split_whitespace();
                if words.next() != Some("make") {
                    continue;
                }
                for word in words.take_while(|w| is_target_name(w)) {
                    found.push((shown.clone(), line.number, word.to_string()));
                }
            }
        }
    }
    found
}

fn is_target_name(word: &str) -> bool {
    word.starts_with(|c: char| c.is_ascii_lowercase())
        && word
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The rule names of the Makefile (`name: ...`, not `NAME := ...`).
fn make_targets() -> BTreeSet<String> {
    let path = repo_root().join("Makefile");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.split_once(':').filter(|(_, rest)| !rest.starts_with('=')))
        .map(|(name, _)| name)
        .filter(|name| is_target_name(name))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let documents = documents();
    assert!(
        documents.len() >= 6,
        "README.md and docs/*.md: {} files",
        documents.len()
    );
    let (broken, checked) = broken_links(&documents);
    assert!(
        checked >= 10,
        "only {checked} relative links found: is the link parser broken?"
    );
    assert!(
        broken.is_empty(),
        "broken links in the docs:\n{}",
        broken.join("\n")
    );
}

#[test]
fn every_make_target_the_docs_name_exists() {
    let targets = make_targets();
    assert!(
        targets.contains("test") && targets.contains("crds"),
        "Makefile targets: {targets:?}"
    );
    let invocations = make_invocations(&documents());
    assert!(
        invocations.len() >= 10,
        "only {} `make` commands found: is the parser broken?",
        invocations.len()
    );
    let missing: Vec<String> = invocations
        .iter()
        .filter(|(_, _, target)| !targets.contains(target))
        .map(|(file, line, target)| format!("{file}:{line}: make {target}"))
        .collect();
    assert!(
        missing.is_empty(),
        "the docs name make targets the Makefile does not have (targets: {}):\n{}",
        targets.iter().cloned().collect::<Vec<_>>().join(", "),
        missing.join("\n")
    );
}

#[test]
fn the_parsers_see_what_github_renders() {
    assert_eq!(slug("`start_agent_session`"), "start_agent_session");
    assert_eq!(slug("RBAC, and why"), "rbac-and-why");
    assert_eq!(
        slug("The process node (test and development infrastructure)"),
        "the-process-node-test-and-development-infrastructure"
    );
    let doc = "# A\n## A\n```\n# not a heading\n```\n## B c\n";
    assert_eq!(anchors(doc), ["a", "a-1", "b-c"].map(String::from).into());
    assert_eq!(
        link_targets("see [x](a.md#b) and [y](c.md \"t\") and ![i](img.png)"),
        ["a.md#b", "c.md", "img.png"]
    );
    assert_eq!(link_targets("[ref]: other.md#z"), ["other.md#z"]);
    let (prose, spans) = split_code_spans("run `make crds` not [a](`b`) ``x ` y``");
    assert_eq!(spans, ["make crds", "b", "x ` y"]);
    assert!(!prose.contains("make"));
    let coded: Vec<bool> =
        lines("text\n\n    make run\n- item\n    continued\n```sh\nmake x\n```\n")
            .iter()
            .map(|l| l.code)
            .collect();
    assert_eq!(coded, [false, false, true, false, false, true, true, true]);
}
