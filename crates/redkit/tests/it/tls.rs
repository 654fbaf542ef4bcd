//! TLS: `rediss://` through rustls, trusting a CA from `tls_ca_file`.

use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use redkit::Error;
use redkit::config::RedisConfig;
use redkit::connection::RedisConnection;
use redkit_testkit::{RedisServer, TlsFiles};

/// A CA and a server certificate for `localhost`, written as PEM files.
fn certificates(dir: &std::path::Path) -> TlsFiles {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let files = TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        ca: dir.join("ca.pem"),
    };
    std::fs::write(&files.cert, server.pem()).unwrap();
    std::fs::write(&files.key, server_key.serialize_pem()).unwrap();
    std::fs::write(&files.ca, ca.as_ref().pem()).unwrap();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_connects_with_the_configured_ca_and_refuses_an_unknown_one() {
    let dir = tempfile_dir();
    let files = certificates(dir.path());
    let server = RedisServer::builder().tls(files.clone()).start();
    let url = server.tls_url().unwrap();

    let config = RedisConfig::builder()
        .url(&url)
        .unwrap()
        .tls_ca_file(&files.ca)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    assert!(config.tls);
    let connection = RedisConnection::connect(config).unwrap();
    connection.wait_ready(Duration::from_secs(5)).await.unwrap();
    let _: () = connection
        .query(redis::cmd("SET").arg("over").arg("tls"))
        .await
        .unwrap();
    let value: String = connection
        .query(redis::cmd("GET").arg("over"))
        .await
        .unwrap();
    assert_eq!(value, "tls");
    let info: String = connection
        .query(redis::cmd("CLIENT").arg("INFO"))
        .await
        .unwrap();
    let tls_port = url.rsplit(':').next().unwrap();
    assert!(
        info.contains(&format!("laddr=127.0.0.1:{tls_port} ")),
        "not on the TLS port: {info}"
    );

    // Without the CA (system roots only) the certificate is refused, clearly.
    let untrusted = RedisConfig::builder()
        .url(&url)
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let untrusted = RedisConnection::connect(untrusted).unwrap();
    let error = untrusted.dedicated().await.unwrap_err();
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");

    // A CA file that does not exist is a configuration error, not a hang.
    let missing = RedisConfig::builder()
        .url(&url)
        .unwrap()
        .tls_ca_file(dir.path().join("nope.pem"))
        .build()
        .unwrap();
    let error = RedisConnection::connect(missing).unwrap_err().to_string();
    assert!(
        error.contains("tls_ca_file") && error.contains("nope.pem"),
        "{error}"
    );
}

fn tempfile_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
