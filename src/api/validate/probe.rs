//! The probe's part of validation: where and how often to probe, and the HTTP request's headers,
//! response checks and TLS.

use std::time::Duration as StdDuration;

use super::{
    BodyChecks, CaRef, Check, HeaderSetting, HeaderSource, HttpSettings, InvalidSpec, ProbeSettings,
    SuccessCodes, TlsSettings, invalid, names, path, pattern, port,
};
use crate::api::{CaSource, HttpProbe, Probe, ProbeVia, Scheme};

/// Parses `spec.probe`.
pub(super) fn probe(probe: &Probe) -> Result<ProbeSettings, InvalidSpec> {
    let service = match (probe.via, &probe.service) {
        (ProbeVia::Service, None) => {
            return Err(invalid(
                "spec.probe.service",
                "is required when spec.probe.via is Service",
            ));
        }
        (ProbeVia::Service, Some(name)) if name.is_empty() => {
            return Err(invalid("spec.probe.service", "must name a Service"));
        }
        (_, Some(name)) => {
            names::service("spec.probe.service", name)?;
            Some(name.clone())
        }
        (_, None) => None,
    };
    if probe.period_seconds == 0 {
        return Err(invalid("spec.probe.periodSeconds", "must be at least 1"));
    }
    let (check, port_ref, timeout_seconds, timeout_field) = match (&probe.http, &probe.tcp) {
        (Some(http), None) => (
            Check::Http(Box::new(http_settings(http)?)),
            port("spec.probe.http.port", &http.port)?,
            http.timeout_seconds,
            "spec.probe.http.timeoutSeconds",
        ),
        (None, Some(tcp)) => (
            Check::Tcp,
            port("spec.probe.tcp.port", &tcp.port)?,
            tcp.timeout_seconds,
            "spec.probe.tcp.timeoutSeconds",
        ),
        _ => return Err(invalid("spec.probe", "must set exactly one of: http, tcp")),
    };
    if timeout_seconds == 0 {
        return Err(invalid(timeout_field, "must be at least 1"));
    }
    if timeout_seconds > probe.period_seconds {
        return Err(invalid(
            timeout_field,
            format!(
                "must be at most spec.probe.periodSeconds ({timeout_seconds} > {})",
                probe.period_seconds
            ),
        ));
    }
    Ok(ProbeSettings {
        via: probe.via,
        service,
        port: port_ref,
        timeout: StdDuration::from_secs(timeout_seconds.into()),
        period: StdDuration::from_secs(probe.period_seconds.into()),
        check,
    })
}

fn http_settings(http: &HttpProbe) -> Result<HttpSettings, InvalidSpec> {
    // In this order, so a policy with several problems is told the same first one.
    let headers = headers(http)?;
    let response = response_checks(http)?;
    let tls = tls(http)?;
    if http.tls.is_some() && http.scheme != Scheme::Https {
        return Err(invalid("spec.probe.http.tls", "is only used with scheme HTTPS"));
    }
    Ok(HttpSettings {
        path: path("spec.probe.http.path", &http.path)?,
        extra_paths: Vec::new(),
        scheme: http.scheme,
        method: http.method,
        headers,
        body: http.body.clone(),
        success_codes: SuccessCodes::parse("spec.probe.http.successCodes", &http.success_codes)?,
        response,
        tls,
    })
}

fn headers(http: &HttpProbe) -> Result<Vec<HeaderSetting>, InvalidSpec> {
    let mut headers = Vec::with_capacity(http.headers.len());
    for (i, h) in http.headers.iter().enumerate() {
        if http::HeaderName::from_bytes(h.name.as_bytes()).is_err() {
            return Err(invalid(
                format!("spec.probe.http.headers[{i}].name"),
                format!("{:?} is not a valid header name", h.name),
            ));
        }
        let value = match (&h.value, &h.value_from) {
            (Some(v), None) => {
                // What the schema's pattern admits: http would also take bytes beyond ASCII.
                let printable = v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
                if !printable || http::HeaderValue::from_str(v).is_err() {
                    return Err(invalid(
                        format!("spec.probe.http.headers[{i}].value"),
                        "contains characters not allowed in a header value (printable ASCII, spaces and tabs)",
                    ));
                }
                HeaderSource::Literal(v.clone())
            }
            (None, Some(from)) => {
                let key = &from.secret_key_ref;
                names::object(
                    &format!("spec.probe.http.headers[{i}].valueFrom.secretKeyRef.name"),
                    &key.name,
                )?;
                HeaderSource::Secret(key.clone())
            }
            _ => {
                return Err(invalid(
                    format!("spec.probe.http.headers[{i}]"),
                    "must set exactly one of: value, valueFrom",
                ));
            }
        };
        headers.push(HeaderSetting {
            name: h.name.clone(),
            value,
        });
    }
    Ok(headers)
}

fn response_checks(http: &HttpProbe) -> Result<BodyChecks, InvalidSpec> {
    Ok(match &http.response {
        None => BodyChecks::default(),
        Some(r) => BodyChecks {
            must_match: r
                .body_matches
                .as_deref()
                .map(|p| pattern("spec.probe.http.response.bodyMatches", p))
                .transpose()?,
            must_not_match: r
                .body_not_matches
                .as_deref()
                .map(|p| pattern("spec.probe.http.response.bodyNotMatches", p))
                .transpose()?,
            json: r
                .json
                .iter()
                .enumerate()
                .map(|(i, j)| {
                    if !(j.pointer.is_empty() || j.pointer.starts_with('/')) {
                        return Err(invalid(
                            format!("spec.probe.http.response.json[{i}].pointer"),
                            format!("{:?} is not a JSON pointer such as /status", j.pointer),
                        ));
                    }
                    Ok((j.pointer.clone(), j.equals.clone()))
                })
                .collect::<Result<_, _>>()?,
        },
    })
}

fn tls(http: &HttpProbe) -> Result<TlsSettings, InvalidSpec> {
    Ok(match &http.tls {
        None => TlsSettings::default(),
        Some(t) => {
            let ca = match &t.ca {
                None => None,
                Some(CaSource {
                    secret_key_ref: Some(k),
                    config_map_key_ref: None,
                }) => {
                    names::object("spec.probe.http.tls.ca.secretKeyRef.name", &k.name)?;
                    Some(CaRef::Secret(k.clone()))
                }
                Some(CaSource {
                    secret_key_ref: None,
                    config_map_key_ref: Some(k),
                }) => {
                    names::object("spec.probe.http.tls.ca.configMapKeyRef.name", &k.name)?;
                    Some(CaRef::ConfigMap(k.clone()))
                }
                Some(_) => {
                    return Err(invalid(
                        "spec.probe.http.tls.ca",
                        "must set exactly one of: secretKeyRef, configMapKeyRef",
                    ));
                }
            };
            if ca.is_some() && t.insecure_skip_verify {
                return Err(invalid(
                    "spec.probe.http.tls",
                    "ca and insecureSkipVerify exclude each other",
                ));
            }
            TlsSettings {
                ca,
                server_name: t.server_name.clone(),
                insecure_skip_verify: t.insecure_skip_verify,
            }
        }
    })
}
