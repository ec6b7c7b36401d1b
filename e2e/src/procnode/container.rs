//! How one container of a Pod becomes a local process: its environment (with the kubelet's `$(VAR)` expansion),
//! its command line, and the translation of in-container paths (volume mounts, the termination message file) to
//! the local folders that stand in for them. Pure functions, tested without a cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the container's paths are on this machine: each mount path and the local folder (or file) behind it.
#[derive(Debug, Clone, Default)]
pub struct PathMap {
    /// (container path, local path), longest container path first so that nested mounts win.
    mounts: Vec<(PathBuf, PathBuf)>,
}

impl PathMap {
    pub fn new(mut mounts: Vec<(PathBuf, PathBuf)>) -> PathMap {
        mounts.sort_by_key(|(c, _)| std::cmp::Reverse(c.as_os_str().len()));
        PathMap { mounts }
    }

    /// The local path of an absolute in-container path under a mount; `None` when no mount covers it.
    pub fn local(&self, path: &str) -> Option<PathBuf> {
        let path = Path::new(path);
        if !path.is_absolute() {
            return None;
        }
        self.mounts.iter().find_map(|(container, local)| {
            path.strip_prefix(container).ok().map(|rest| {
                if rest.as_os_str().is_empty() {
                    local.clone()
                } else {
                    local.join(rest)
                }
            })
        })
    }

    /// `value` with a leading in-container path translated; other values unchanged. Applied to environment
    /// values, arguments and the working folder, which is how a program finds its files.
    pub fn translate(&self, value: &str) -> String {
        match self.local(value) {
            Some(local) => local.display().to_string(),
            None => value.to_string(),
        }
    }
}

/// Expands `$(NAME)` references with `vars` as the kubelet does: `$$` escapes a `$`, unknown references stay as
/// written.
pub fn expand(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < text.len() {
        if bytes[i] == b'$' && i + 1 < text.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(end) = text[i + 2..].find(')') {
                        let name = &text[i + 2..i + 2 + end];
                        if let Some(value) = vars.get(name) {
                            out.push_str(value);
                            i += 3 + end;
                            continue;
                        }
                    }
                }
                _ => {}
            }
        }
        let c = text[i..].chars().next().expect("in bounds");
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// The value of a Pod field reference (`valueFrom.fieldRef` and downward API files), for the fields a process can
/// know.
pub fn field(pod: &k8s_openapi::api::core::v1::Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let quoted = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix("']"))
            .map(String::from)
    };
    if let Some(key) = quoted("metadata.annotations['") {
        return meta.annotations.as_ref()?.get(&key).cloned();
    }
    if let Some(key) = quoted("metadata.labels['") {
        return meta.labels.as_ref()?.get(&key).cloned();
    }
    let map_text = |m: &Option<BTreeMap<String, String>>| {
        m.iter()
            .flatten()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect::<Vec<_>>()
            .join("\n")
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "metadata.labels" => Some(map_text(&meta.labels)),
        "metadata.annotations" => Some(map_text(&meta.annotations)),
        "spec.nodeName" => spec?.node_name.clone(),
        "spec.serviceAccountName" => Some(
            spec?
                .service_account_name
                .clone()
                .unwrap_or_else(|| "default".into()),
        ),
        "status.hostIP" | "status.podIP" | "status.hostIPs" | "status.podIPs" => {
            Some("127.0.0.1".into())
        }
        _ => None,
    }
}

/// The command line: `command` (else the image's entrypoint, as configured) then `args`, each with `$(VAR)`
/// expanded and in-container paths translated.
pub fn command_line(
    command: &[String],
    args: &[String],
    entrypoint: Option<&str>,
    env: &BTreeMap<String, String>,
    paths: &PathMap,
) -> Option<Vec<String>> {
    let mut line: Vec<String> = if command.is_empty() {
        vec![entrypoint?.to_string()]
    } else {
        command.to_vec()
    };
    line.extend(args.iter().cloned());
    Some(
        line.iter()
            .map(|a| paths.translate(&expand(a, env)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expands_like_the_kubelet() {
        let v = vars(&[("A", "1"), ("SESSION", "s-1")]);
        assert_eq!(expand("x$(A)y", &v), "x1y");
        assert_eq!(
            expand("http://h/agents/$(SESSION)/", &v),
            "http://h/agents/s-1/"
        );
        assert_eq!(expand("$(B) $$(A) $ $(", &v), "$(B) $(A) $ $(");
        assert_eq!(expand("é$(A)é", &v), "é1é");
    }

    #[test]
    fn translates_paths_under_mounts_longest_first() {
        let paths = PathMap::new(vec![
            ("/var/run".into(), "/tmp/p/run".into()),
            ("/var/run/secrets/x".into(), "/tmp/p/token".into()),
            ("/dev/termination-log".into(), "/tmp/p/term".into()),
        ]);
        assert_eq!(
            paths.translate("/var/run/secrets/x/token"),
            "/tmp/p/token/token"
        );
        assert_eq!(paths.translate("/var/run/other"), "/tmp/p/run/other");
        assert_eq!(paths.translate("/dev/termination-log"), "/tmp/p/term");
        assert_eq!(paths.translate("/var/running"), "/var/running");
        assert_eq!(paths.translate("relative/var/run"), "relative/var/run");
        assert_eq!(paths.translate("--flag"), "--flag");
    }

    #[test]
    fn command_lines_use_the_entrypoint_when_no_command_is_given() {
        let env = vars(&[("N", "7")]);
        let paths = PathMap::new(vec![("/etc/agent".into(), "/tmp/f".into())]);
        assert_eq!(
            command_line(
                &[],
                &["--n=$(N)".into(), "/etc/agent/x".into()],
                Some("runner"),
                &env,
                &paths
            ),
            Some(vec!["runner".into(), "--n=7".into(), "/tmp/f/x".into()])
        );
        assert_eq!(
            command_line(
                &["sh".into()],
                &["-c".into(), "exit $(N)".into()],
                None,
                &env,
                &paths
            ),
            Some(vec!["sh".into(), "-c".into(), "exit 7".into()])
        );
        assert_eq!(command_line(&[], &[], None, &env, &paths), None);
    }

    #[test]
    fn pod_fields() {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u",
                         "annotations": {"agentorchestrator.dev/prompt": "hi"}, "labels": {"a": "b"}},
            "spec": {"containers": [], "nodeName": "n"}
        }))
        .unwrap();
        assert_eq!(field(&pod, "metadata.namespace").as_deref(), Some("ns"));
        assert_eq!(
            field(&pod, "metadata.annotations['agentorchestrator.dev/prompt']").as_deref(),
            Some("hi")
        );
        assert_eq!(field(&pod, "metadata.labels").as_deref(), Some("a=\"b\""));
        assert_eq!(
            field(&pod, "spec.serviceAccountName").as_deref(),
            Some("default")
        );
        assert_eq!(field(&pod, "metadata.annotations['missing']"), None);
        assert_eq!(field(&pod, "status.phase"), None);
    }
}
