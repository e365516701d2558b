//! Names a policy gives to objects of its own namespace: its workload, its Service, the Secrets and
//! ConfigMaps it reads. A name goes into the path of the API request that reads the object, and
//! kube does not escape it, so a name Kubernetes would never give an object (`../../kube-system/
//! secrets/x`, `web/status`, `x?watch=1`) could address another object, or another namespace's.
//! Only names Kubernetes allows pass: a DNS-1123 subdomain, or a DNS-1035 label for a Service.

use super::{InvalidSpec, invalid};

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters; a DNS-1035 label also starts with a
/// letter.
fn label(s: &str, letter_first: bool) -> bool {
    let b = s.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            b.len() <= 63
                && (if letter_first {
                    first.is_ascii_lowercase()
                } else {
                    inner(first)
                })
                && inner(last)
                && b.iter().all(|c| inner(c) || *c == b'-')
        }
        _ => false,
    }
}

/// The name of an object of the policy's namespace: a DNS-1123 subdomain.
pub fn object(field: &str, name: &str) -> Result<(), InvalidSpec> {
    if name.len() <= 253 && name.split('.').all(|l| label(l, false)) {
        return Ok(());
    }
    Err(invalid(
        field,
        format!(
            "{name:?} is not an object name (lowercase letters, digits, '-' and '.'); it names an object in the policy's namespace"
        ),
    ))
}

/// The name of a Service of the policy's namespace: a DNS-1035 label.
pub fn service(field: &str, name: &str) -> Result<(), InvalidSpec> {
    if label(name, true) {
        return Ok(());
    }
    Err(invalid(
        field,
        format!(
            "{name:?} is not a Service name (lowercase letters, digits and '-', starting with a letter); it names a Service in the policy's namespace"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_kubernetes_allows_pass() {
        let long_label = "a".repeat(63);
        let too_long = format!("{}.{}.{}.{}", long_label, long_label, long_label, "a".repeat(62));
        for (name, is_object, is_service) in [
            ("web", true, true),
            ("web-1", true, true),
            ("1web", true, false),
            ("web.v2", true, false),
            ("probe-token.shop", true, false),
            (long_label.as_str(), true, true),
            ("", false, false),
            ("Web", false, false),
            ("web-", false, false),
            ("-web", false, false),
            ("web..v2", false, false),
            (".web", false, false),
            ("web.", false, false),
            ("..", false, false),
            ("../../kube-system/secrets/admin", false, false),
            ("other/web", false, false),
            ("web/status", false, false),
            ("web?watch=1", false, false),
            ("web%2F..", false, false),
            ("web.other.svc.cluster.local", true, false),
            ("web_1", false, false),
            (too_long.as_str(), false, false),
        ] {
            assert_eq!(object("f", name).is_ok(), is_object, "object {name:?}");
            assert_eq!(service("f", name).is_ok(), is_service, "service {name:?}");
        }
        assert_eq!(
            object("spec.x.name", "../x").unwrap_err().to_string(),
            "spec.x.name: \"../x\" is not an object name (lowercase letters, digits, '-' and '.'); it names an object in the policy's namespace"
        );
    }
}
