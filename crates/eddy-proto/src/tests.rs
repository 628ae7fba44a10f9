//! The descriptor set built in matches the committed protos, and no field's tag or type
//! changed behind `proto/eddy/v1/fields.lock` (the evolution rules).

use std::collections::BTreeSet;
use std::path::PathBuf;

use prost::Message;
use prost_types::{DescriptorProto, FileDescriptorSet};

fn proto_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto")
}

fn compile_committed() -> FileDescriptorSet {
    let root = proto_root();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("eddy/v1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    files.sort();
    protox::compile(&files, [&root]).unwrap()
}

#[test]
fn built_in_descriptor_set_is_the_committed_protos() {
    let built = FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET).unwrap();
    let committed = compile_committed();
    let names = |s: &FileDescriptorSet| -> Vec<String> {
        s.file.iter().filter_map(|f| f.name.clone()).collect()
    };
    assert_eq!(names(&built), names(&committed));
    assert!(
        built == committed,
        "the descriptor set in the build differs from proto/eddy/v1 (stale build?)"
    );
}

/// One line per field (`eddy.v1.Msg.field = TAG LABEL TYPE`) and enum value, and the tags
/// and names each message reserves.
fn fields(set: &FileDescriptorSet) -> (BTreeSet<String>, BTreeSet<String>) {
    fn walk(
        prefix: &str,
        m: &DescriptorProto,
        out: &mut BTreeSet<String>,
        res: &mut BTreeSet<String>,
    ) {
        let name = format!("{prefix}.{}", m.name());
        for f in &m.field {
            let ty = if f.type_name().is_empty() {
                format!("{:?}", f.r#type())
            } else {
                f.type_name().to_string()
            };
            let optional = if f.proto3_optional() { " optional" } else { "" };
            out.insert(format!(
                "{name}.{} = {} {:?}{optional} {ty}",
                f.name(),
                f.number(),
                f.label()
            ));
        }
        for r in &m.reserved_range {
            for n in r.start()..r.end() {
                res.insert(format!("{name} #{n}"));
            }
        }
        for r in &m.reserved_name {
            res.insert(format!("{name} {r}"));
        }
        for nested in &m.nested_type {
            if !nested.options.as_ref().is_some_and(|o| o.map_entry()) {
                walk(&name, nested, out, res);
            }
        }
        for e in &m.enum_type {
            for v in &e.value {
                out.insert(format!("{name}.{}.{} = {}", e.name(), v.name(), v.number()));
            }
        }
    }
    let mut out = BTreeSet::new();
    let mut reserved = BTreeSet::new();
    for file in set.file.iter().filter(|f| f.package() == "eddy.v1") {
        let prefix = file.package();
        for m in &file.message_type {
            walk(prefix, m, &mut out, &mut reserved);
        }
        for e in &file.enum_type {
            for v in &e.value {
                out.insert(format!(
                    "{prefix}.{}.{} = {}",
                    e.name(),
                    v.name(),
                    v.number()
                ));
            }
        }
        for s in &file.service {
            for m in &s.method {
                out.insert(format!(
                    "{prefix}.{}/{} ({}{} -> {}{})",
                    s.name(),
                    m.name(),
                    if m.client_streaming() { "stream " } else { "" },
                    m.input_type(),
                    if m.server_streaming() { "stream " } else { "" },
                    m.output_type()
                ));
            }
        }
    }
    (out, reserved)
}

/// A field, value or method in the lock file must still be there, unchanged, or its tag and
/// name must be reserved; a new one must be added to the lock (set `EDDY_UPDATE_FIELDS_LOCK=1`
/// to rewrite it, then review the diff).
#[test]
fn no_tag_changed_or_vanished_behind_the_lock() {
    let lock_path = proto_root().join("eddy/v1/fields.lock");
    let (current, reserved) = fields(&compile_committed());
    if std::env::var_os("EDDY_UPDATE_FIELDS_LOCK").is_some() {
        let old = std::fs::read_to_string(&lock_path).unwrap_or_default();
        let mut all: BTreeSet<String> = old
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(str::to_string)
            .collect();
        all.extend(current.iter().cloned());
        let body: String = all.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(
            &lock_path,
            format!("# Every field, enum value and method ever published (tests/eddy-proto). Lines are never removed.\n{body}"),
        )
        .unwrap();
    }
    let lock = std::fs::read_to_string(&lock_path).unwrap();
    let (broken, new) = check(&lock, &current, &reserved);
    assert!(
        broken.is_empty(),
        "breaking changes to eddy.v1:\n{}",
        broken.join("\n")
    );
    assert!(
        new.is_empty(),
        "new fields are not in proto/eddy/v1/fields.lock (run with EDDY_UPDATE_FIELDS_LOCK=1 and commit it):\n{}",
        new.join("\n")
    );
}

/// The locked lines broken by `current` (changed, or gone without reserving tag and name),
/// and the current lines the lock does not list yet.
fn check(
    lock: &str,
    current: &BTreeSet<String>,
    reserved: &BTreeSet<String>,
) -> (Vec<String>, Vec<String>) {
    let locked: BTreeSet<&str> = lock
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let mut broken = Vec::new();
    for line in &locked {
        if current.contains(*line) {
            continue;
        }
        let Some((path, rest)) = line.split_once(" = ") else {
            broken.push(format!("{line}: malformed"));
            continue;
        };
        let is_field = rest.split(' ').count() >= 3 && !path.contains('/');
        if is_field && let Some((msg, field)) = path.rsplit_once('.') {
            let tag = rest.split(' ').next().unwrap_or("");
            let now_there = current.iter().any(|c| c.starts_with(&format!("{path} = ")));
            let tag_reserved = reserved.contains(&format!("{msg} #{tag}"));
            let name_reserved = reserved.contains(&format!("{msg} {field}"));
            if now_there || !(tag_reserved && name_reserved) {
                broken.push(format!(
                    "{line}: changed or removed without reserving tag {tag} and name `{field}`"
                ));
            }
        } else {
            broken.push(format!(
                "{line}: enum values and methods are never removed or renumbered"
            ));
        }
    }
    let new = current
        .iter()
        .filter(|c| !locked.contains(c.as_str()))
        .cloned()
        .collect();
    (broken, new)
}

/// The lock check catches what it must: a renumbered tag, a field removed without reserving
/// it, a new field not yet locked; a removal with tag and name reserved passes.
#[test]
fn the_lock_check_catches_breaking_changes() {
    let lock = "# c\neddy.v1.E.a = 1 Optional String\neddy.v1.E.b = 2 Optional Double\n";
    let set = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let none = BTreeSet::new();
    let same = set(&[
        "eddy.v1.E.a = 1 Optional String",
        "eddy.v1.E.b = 2 Optional Double",
    ]);
    assert_eq!(check(lock, &same, &none), (vec![], vec![]));
    let renumbered = set(&[
        "eddy.v1.E.a = 3 Optional String",
        "eddy.v1.E.b = 2 Optional Double",
    ]);
    let (broken, new) = check(lock, &renumbered, &none);
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert_eq!(new, vec!["eddy.v1.E.a = 3 Optional String".to_string()]);
    let removed = set(&["eddy.v1.E.a = 1 Optional String"]);
    assert_eq!(check(lock, &removed, &none).0.len(), 1);
    let reserved = set(&["eddy.v1.E #2", "eddy.v1.E b"]);
    assert_eq!(check(lock, &removed, &reserved), (vec![], vec![]));
}
