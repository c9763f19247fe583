//! Parsing Avro schema text and computing the identity used to deduplicate it.

use apache_avro::Schema;
use sha2::{Digest, Sha256};

/// The only schema type this registry supports.
pub const AVRO: &str = "AVRO";

/// A schema accepted from a client: its original text, its parsed form and
/// the fingerprint that decides whether two registrations are "the same".
#[derive(Debug, Clone)]
pub struct ParsedSchema {
    /// The text as the client sent it; this is what readers get back.
    pub text: String,
    /// The parsed schema, used for compatibility checks.
    pub schema: Schema,
    /// Hex SHA-256 of the normalised form (see [`fingerprint`]).
    pub fingerprint: String,
}

/// Why schema text was rejected.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSchema(String);

/// Parses `text` as an Avro schema.
pub fn parse(text: &str) -> Result<ParsedSchema, InvalidSchema> {
    let schema = Schema::parse_str(text).map_err(|e| InvalidSchema(e.to_string()))?;
    let fingerprint = fingerprint(&schema).map_err(InvalidSchema)?;
    Ok(ParsedSchema {
        text: text.to_owned(),
        schema,
        fingerprint,
    })
}

/// Fingerprints the normalised JSON form of `schema`.
///
/// Deliberately not the Parsing Canonical Form: that form strips field
/// defaults and logical types, so `{"type":"long"}` and a
/// `timestamp-millis`, or a field with and without a default, would share
/// one id although readers treat them differently. Confluent likewise
/// deduplicates on the full schema string. The normalised form still ignores
/// whitespace, key order and redundant namespaces.
pub fn fingerprint(schema: &Schema) -> Result<String, String> {
    let normalised = serde_json::to_string(schema).map_err(|e| e.to_string())?;
    Ok(hex::encode(Sha256::digest(normalised.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_and_key_order_do_not_change_the_fingerprint() {
        let a = parse(r#"{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]}"#)
            .expect("valid schema");
        let b = parse(
            r#"{ "fields": [ {"type": "int", "name": "x"} ],
                "name": "A", "type": "record" }"#,
        )
        .expect("valid schema");
        assert_eq!(a.fingerprint, b.fingerprint);
    }

    #[test]
    fn defaults_and_logical_types_change_the_fingerprint() {
        let plain = parse(r#"{"type":"record","name":"A","fields":[{"name":"x","type":"long"}]}"#)
            .expect("valid schema");
        let default = parse(
            r#"{"type":"record","name":"A","fields":[{"name":"x","type":"long","default":1}]}"#,
        )
        .expect("valid schema");
        let logical =
            parse(r#"{"type":"long","logicalType":"timestamp-millis"}"#).expect("valid schema");
        let long = parse(r#""long""#).expect("valid schema");
        assert_ne!(plain.fingerprint, default.fingerprint);
        assert_ne!(logical.fingerprint, long.fingerprint);
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"type":"record","name":"A"}"#).is_err());
    }
}
