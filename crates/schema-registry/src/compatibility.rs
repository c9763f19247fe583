//! Compatibility levels and the reader/writer checks behind them.

use std::fmt;
use std::str::FromStr;

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;

/// A Confluent compatibility level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompatibilityLevel {
    /// No checks.
    None,
    /// The new schema reads data written with the latest version.
    Backward,
    /// The new schema reads data written with every live version.
    BackwardTransitive,
    /// The latest version reads data written with the new schema.
    Forward,
    /// Every live version reads data written with the new schema.
    ForwardTransitive,
    /// Both backward and forward against the latest version.
    Full,
    /// Both backward and forward against every live version.
    FullTransitive,
}

/// The level used when neither the subject nor the global config sets one.
pub const DEFAULT_LEVEL: CompatibilityLevel = CompatibilityLevel::Backward;

/// A compatibility level name that is not one of Confluent's.
#[derive(Debug, thiserror::Error)]
#[error("invalid compatibility level {0:?}")]
pub struct InvalidLevel(pub String);

impl CompatibilityLevel {
    /// Confluent's upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    fn is_transitive(self) -> bool {
        matches!(
            self,
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive
        )
    }

    fn checks_backward(self) -> bool {
        matches!(
            self,
            Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    fn checks_forward(self) -> bool {
        matches!(
            self,
            Self::Forward | Self::ForwardTransitive | Self::Full | Self::FullTransitive
        )
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CompatibilityLevel {
    type Err = InvalidLevel;

    /// Case-insensitive, like Confluent's `CompatibilityLevel.forName`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "NONE" => Self::None,
            "BACKWARD" => Self::Backward,
            "BACKWARD_TRANSITIVE" => Self::BackwardTransitive,
            "FORWARD" => Self::Forward,
            "FORWARD_TRANSITIVE" => Self::ForwardTransitive,
            "FULL" => Self::Full,
            "FULL_TRANSITIVE" => Self::FullTransitive,
            _ => return Err(InvalidLevel(s.to_owned())),
        })
    }
}

/// A registered version the candidate is checked against.
#[derive(Debug)]
pub struct Existing {
    /// The version number, reported in messages.
    pub version: i32,
    /// The parsed schema of that version.
    pub schema: Schema,
}

/// Checks `candidate` against `existing` (live versions, oldest first) as
/// the level prescribes: non-transitive levels look only at the latest.
/// Returns one message per incompatibility; empty means compatible.
pub fn check(level: CompatibilityLevel, candidate: &Schema, existing: &[Existing]) -> Vec<String> {
    let targets = if level.is_transitive() {
        existing
    } else {
        existing
            .split_last()
            .map_or(&[][..], |(last, _)| std::slice::from_ref(last))
    };
    targets
        .iter()
        .flat_map(|old| check_one(level, candidate, old))
        .collect()
}

/// Checks `candidate` against one version in the level's direction(s),
/// ignoring transitivity (used by the per-version compatibility endpoint).
pub fn check_one(level: CompatibilityLevel, candidate: &Schema, old: &Existing) -> Vec<String> {
    let mut messages = Vec::new();
    if level.checks_backward() {
        // Backward: the new schema (reader) decodes data from the old (writer).
        if let Err(e) = SchemaCompatibility::can_read(&old.schema, candidate) {
            messages.push(format!(
                "{{errorType:'READER_INCOMPATIBLE', description:'The new schema cannot read data \
                 written with version {}: {e:?}', oldSchemaVersion: {}, compatibility: '{level}'}}",
                old.version, old.version
            ));
        }
    }
    if level.checks_forward() {
        // Forward: the old schema (reader) decodes data from the new (writer).
        if let Err(e) = SchemaCompatibility::can_read(candidate, &old.schema) {
            messages.push(format!(
                "{{errorType:'WRITER_INCOMPATIBLE', description:'Version {} cannot read data \
                 written with the new schema: {e:?}', oldSchemaVersion: {}, compatibility: '{level}'}}",
                old.version, old.version
            ));
        }
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &str) -> Schema {
        Schema::parse_str(&format!(
            r#"{{"type":"record","name":"R","fields":[{fields}]}}"#
        ))
        .expect("valid test schema")
    }

    fn existing(versions: Vec<Schema>) -> Vec<Existing> {
        versions
            .into_iter()
            .zip(1..)
            .map(|(schema, version)| Existing { version, schema })
            .collect()
    }

    #[test]
    fn levels_parse_case_insensitively() {
        for name in ["none", "Backward", "FULL_TRANSITIVE", "forward_transitive"] {
            let level: CompatibilityLevel = name.parse().expect("valid level");
            assert_eq!(level.as_str(), name.to_ascii_uppercase());
        }
        assert!("SIDEWAYS".parse::<CompatibilityLevel>().is_err());
    }

    #[test]
    fn transitive_looks_at_every_version() {
        let a = r#"{"name":"a","type":"int"}"#;
        let b_default = r#"{"name":"b","type":"int","default":0}"#;
        let v1 = record(a);
        let v2 = record(&format!("{a},{b_default}"));
        // v3 drops the default of `b`: v2 data carries `b`, v1 data does not.
        let v3 = record(&format!(r#"{a},{{"name":"b","type":"int"}}"#));
        let versions = existing(vec![v1, v2]);
        assert!(check(CompatibilityLevel::Backward, &v3, &versions).is_empty());
        assert_eq!(
            check(CompatibilityLevel::BackwardTransitive, &v3, &versions).len(),
            1
        );
    }

    #[test]
    fn none_accepts_anything() {
        let versions = existing(vec![record(r#"{"name":"a","type":"int"}"#)]);
        let unrelated = Schema::parse_str(r#""string""#).expect("valid test schema");
        assert!(check(CompatibilityLevel::None, &unrelated, &versions).is_empty());
        assert_eq!(
            check(CompatibilityLevel::Full, &unrelated, &versions).len(),
            2
        );
    }
}
