//! Test fixtures: objects from YAML, as a person would write them.

use serde::de::DeserializeOwned;

pub fn yaml<T: DeserializeOwned>(text: &str) -> T {
    serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("fixture does not parse: {e}\n{text}"))
}
