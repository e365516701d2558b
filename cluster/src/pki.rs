//! The control plane's certificates: one CA, the serving certificates of kube-apiserver and of
//! kwok's kubelet endpoint, a client certificate per identity, and the service-account signing key.
//! ECDSA P-256 throughout; valid for a year, which outlives any local cluster.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use crate::{Error, write_file};

/// A client identity: its certificate's common name and organisations (Kubernetes' user name and
/// groups).
#[derive(Clone, Copy, Debug)]
pub struct Identity {
    pub file: &'static str,
    pub user: &'static str,
    pub groups: &'static [&'static str],
}

/// The cluster administrator (`system:masters` bypasses RBAC): the identity of the kubeconfig that
/// `make cluster` writes, and of kwok, which acts as the nodes' kubelets.
pub const ADMIN: Identity = Identity {
    file: "admin",
    user: "kubernetes-admin",
    groups: &["system:masters"],
};
/// kube-controller-manager, bound by the apiserver's default RBAC policy.
pub const CONTROLLER_MANAGER: Identity = Identity {
    file: "kube-controller-manager",
    user: "system:kube-controller-manager",
    groups: &[],
};
/// kube-scheduler, bound by the apiserver's default RBAC policy.
pub const SCHEDULER: Identity = Identity {
    file: "kube-scheduler",
    user: "system:kube-scheduler",
    groups: &[],
};
/// kube-apiserver talking to the kubelets (kwok) for logs, exec and port-forward.
pub const APISERVER_KUBELET_CLIENT: Identity = Identity {
    file: "apiserver-kubelet-client",
    user: "kube-apiserver-kubelet-client",
    groups: &["system:masters"],
};

/// Where the files are.
#[derive(Clone, Debug)]
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.crt"))
    }
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }
    /// The service-account signing key.
    pub fn service_account_key(&self) -> PathBuf {
        self.dir.join("sa.key")
    }
    /// Its public half, which verifies tokens.
    pub fn service_account_public_key(&self) -> PathBuf {
        self.dir.join("sa.pub")
    }

    /// Writes every file. `serving_ips` go into the serving certificates' names.
    pub fn generate(dir: &Path, serving_ips: &[&str]) -> Result<Self, Error> {
        let pki = Self {
            dir: dir.to_path_buf(),
        };
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "apphealth-local-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut ca_params);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        write_file(&pki.ca(), ca.pem())?;

        let mut names: Vec<String> = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        names.extend(serving_ips.iter().map(|s| s.to_string()));
        pki.leaf(&ca, "apiserver", &names, "kube-apiserver", &[], true)?;
        pki.leaf(&ca, "kwok", &names, "kwok", &[], true)?;
        for id in [ADMIN, CONTROLLER_MANAGER, SCHEDULER, APISERVER_KUBELET_CLIENT] {
            pki.leaf(&ca, id.file, &[], id.user, id.groups, false)?;
        }
        let sa = KeyPair::generate()?;
        write_file(&pki.service_account_key(), sa.serialize_pem())?;
        write_file(&pki.service_account_public_key(), sa.public_key_pem())?;
        Ok(pki)
    }

    fn leaf(
        &self,
        ca: &CertifiedIssuer<'_, KeyPair>,
        file: &str,
        names: &[String],
        common_name: &str,
        organisations: &[&str],
        server: bool,
    ) -> Result<(), Error> {
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        for o in organisations {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = if server {
            vec![ExtendedKeyUsagePurpose::ServerAuth]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        params.use_authority_key_identifier_extension = true;
        validity(&mut params);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, ca)?;
        write_file(&self.cert(file), cert.pem())?;
        write_file(&self.key(file), key.serialize_pem())?;
        Ok(())
    }
}

/// From a day ago (clocks of the processes agree, but a day of slack costs nothing) for a year.
fn validity(params: &mut CertificateParams) {
    let now = jiff::Timestamp::now();
    let day = jiff::SignedDuration::from_hours(24);
    let to_time = |t: jiff::Timestamp| {
        let d = t.to_zoned(jiff::tz::TimeZone::UTC).date();
        rcgen::date_time_ymd(i32::from(d.year()), d.month() as u8, d.day() as u8)
    };
    params.not_before = to_time(now - day);
    params.not_after = to_time(now + day * 365);
}
