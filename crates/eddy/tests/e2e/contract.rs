//! The OpenAPI document as a contract: every recorded answer must be one the document
//! describes — a documented status, and a JSON body valid against that status's schema (JSON
//! Schema 2020-12, as OpenAPI 3.1 uses). The golden test runs each of its answers through it,
//! so the document cannot drift from what the server answers.

use serde_json::{Value, json};

pub struct Contract {
    doc: Value,
}

impl Contract {
    pub fn new(doc: Value) -> Self {
        assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3.1"));
        // Every reference resolves (a schema a derive did not register would be skipped by
        // clients and fuzzers alike).
        let text = doc.to_string();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap_or("");
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "the document refers to schema `{name}` but does not define it"
            );
        }
        Self { doc }
    }

    /// The document's path template that `path` (without the query) matches.
    fn template(&self, path: &str) -> Option<&str> {
        let want: Vec<&str> = path.split('/').collect();
        self.doc["paths"]
            .as_object()?
            .keys()
            .map(String::as_str)
            .find(|t| {
                let have: Vec<&str> = t.split('/').collect();
                have.len() == want.len()
                    && have
                        .iter()
                        .zip(&want)
                        .all(|(h, w)| h == w || (h.starts_with('{') && h.ends_with('}')))
            })
    }

    /// Checks one answer; `Err` says what the document does not describe.
    pub fn check(
        &self,
        method: &str,
        path_and_query: &str,
        status: u16,
        body: &Value,
    ) -> Result<(), String> {
        let path = path_and_query.split('?').next().unwrap_or("");
        let template = self
            .template(path)
            .ok_or_else(|| format!("{method} {path}: no such path in the document"))?;
        let op = &self.doc["paths"][template][method.to_ascii_lowercase()];
        if op.is_null() {
            return Err(format!("{method} {template}: no such operation"));
        }
        let response = &op["responses"][status.to_string()];
        if response.is_null() {
            return Err(format!(
                "{method} {template}: status {status} is not documented"
            ));
        }
        let Some(schema) = response["content"]["application/json"].get("schema") else {
            return Err(format!(
                "{method} {template} {status}: no JSON schema documented"
            ));
        };
        // `$ref`s point into the document's components: carry them along.
        let mut root = schema.clone();
        root["components"] = self.doc["components"].clone();
        root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        let validator = jsonschema::validator_for(&root)
            .map_err(|e| format!("{method} {template} {status}: schema does not compile: {e}"))?;
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("at {}: {e}", e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{method} {template} {status}: the answer does not match the schema:\n  {}",
                errors.join("\n  ")
            ))
        }
    }
}
