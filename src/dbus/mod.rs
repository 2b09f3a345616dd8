//! The D-Bus interface `org.armord.Armord1` (server) and its proxy (client).
//! Methods send commands into the daemon loop; they change no state
//! themselves. What they read is what the loop published after its last
//! reconcile.

use crate::journal::Counters;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{mpsc, oneshot};
use zbus::object_server::SignalEmitter;
use zbus::{Type, interface, proxy};

pub const BUS_NAME: &str = "org.armord.Armord1";
pub const OBJECT_PATH: &str = "/org/armord/Armord1";
pub const INTERFACE: &str = "org.armord.Armord1";

/// One profile as `ListProfiles` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ProfileInfo {
    pub name: String,
    pub mode: String,
    /// loaded | invalid | conflict | refused | deferred | held
    pub state: String,
    pub file: String,
    pub sha256: String,
    /// The problem, as `file:line: message`; empty when none.
    pub error: String,
}

/// The rows `ListProfiles` returns: each owned profile, by name, then
/// each file with a problem that owns none. Kept a name at a time
/// (`daemon::rows`).
#[derive(Debug, Clone, Default)]
pub struct ProfileRows {
    pub owned: std::collections::BTreeMap<String, Row>,
    pub files: Vec<ProfileInfo>,
}

/// An owned profile's row, held compactly (10,000 of them at rest): its
/// name is the key, its version shared with the manifest's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub mode: crate::apparmor::Mode,
    /// loaded | invalid | deferred | held
    pub state: &'static str,
    /// The file, shared with the manifest's entry; escaped when listed.
    pub file: std::sync::Arc<std::path::Path>,
    pub sha256: crate::sha::Sha,
    pub error: Box<str>,
}

impl Row {
    /// The row `info` shows (a state armord does not give an owned
    /// profile reads as `invalid`).
    pub fn of(info: &ProfileInfo) -> Row {
        Row {
            mode: crate::apparmor::Mode::from_word(&info.mode),
            state: ["loaded", "deferred", "held"]
                .into_iter()
                .find(|s| *s == info.state)
                .unwrap_or("invalid"),
            file: std::path::Path::new(&info.file).into(),
            sha256: info.sha256.as_str().into(),
            error: info.error.as_str().into(),
        }
    }

    pub fn info(&self, name: &str) -> ProfileInfo {
        ProfileInfo {
            name: name.to_owned(),
            mode: self.mode.to_string(),
            state: self.state.to_owned(),
            file: crate::escape::path(&self.file),
            sha256: self.sha256.to_string(),
            error: self.error.to_string(),
        }
    }
}

impl ProfileRows {
    /// Every row as `ListProfiles` returns it.
    pub fn iter(&self) -> impl Iterator<Item = ProfileInfo> + '_ {
        self.owned
            .iter()
            .map(|(n, r)| r.info(n))
            .chain(self.files.iter().cloned())
    }
}

/// The result of `Sync`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SyncResult {
    /// True when no file was invalid or refused.
    pub clean: bool,
    pub summary: String,
    /// Each problem as `file:line: message`.
    pub problems: Vec<String>,
}

/// What the loop publishes after each reconcile.
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// starting | ready | degraded | reloading
    pub state: String,
    pub counts: HashMap<String, u32>,
    pub last_sync_usec: u64,
    pub last_sync_summary: String,
    pub profiles: ProfileRows,
    pub problems: Vec<String>,
    /// Each profile in trial or promoted from one: its state line.
    pub trials: HashMap<String, String>,
    /// Each profile's lint warnings, one line each.
    pub lints: HashMap<String, Vec<String>>,
}

/// A request from a D-Bus caller to the daemon loop.
#[derive(Debug)]
pub enum Command {
    Sync {
        reply: oneshot::Sender<SyncResult>,
        /// Remove profiles even when more than the mass-removal share of a
        /// source would go at once.
        allow_mass_removal: bool,
        /// Apply a signed revision whose source's last serial was lost.
        accept_signed_serial: bool,
    },
    /// `Promote` (true) or `Trial` (false) a profile, for caller `uid`.
    Trial {
        name: String,
        promote: bool,
        uid: u32,
        reply: oneshot::Sender<Result<String, String>>,
    },
}

/// The object served at `/org/armord/Armord1`.
#[derive(Clone)]
pub struct Armord {
    pub published: Arc<RwLock<Published>>,
    pub commands: mpsc::Sender<Command>,
    pub denials: Arc<Mutex<Counters>>,
    /// The peer's uid, from the socket (`SO_PEERCRED`), on a peer-to-peer
    /// connection (a simulation's socket); on a bus the bus says.
    pub peer_uid: Option<u32>,
}

/// Whether `uid` may call a method that changes anything: root, or the
/// user armord itself runs as (a simulation). Checked in code, whatever
/// the bus policy file allows.
pub fn may_change(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

impl Armord {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Published> {
        self.published.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The uid of the caller of the message `header` heads.
    async fn caller_uid(&self, conn: &zbus::Connection, header: &zbus::message::Header<'_>) -> zbus::fdo::Result<u32> {
        // Peer to peer, the socket says who the peer is; a sender the
        // message names is the peer's own word, never asked about.
        if let Some(uid) = self.peer_uid {
            return Ok(uid);
        }
        match header.sender() {
            Some(sender) => {
                let dbus = zbus::fdo::DBusProxy::new(conn).await?;
                dbus.get_connection_unix_user(sender.to_owned().into()).await
            }
            None => Err(zbus::fdo::Error::AccessDenied("the caller's user is not known".into())),
        }
    }

    /// Refuse a caller that may not change anything; the caller's uid.
    async fn authorize(&self, conn: &zbus::Connection, header: &zbus::message::Header<'_>) -> zbus::fdo::Result<u32> {
        let uid = self.caller_uid(conn, header).await?;
        if may_change(uid) {
            Ok(uid)
        } else {
            log::warn!("D-Bus: a call that changes policy from uid {uid} refused");
            Err(zbus::fdo::Error::AccessDenied(format!(
                "uid {uid} may not change armord's policy (root only)"
            )))
        }
    }

    async fn run_trial(&self, name: String, promote: bool, uid: u32) -> zbus::fdo::Result<String> {
        let (reply, rx) = oneshot::channel();
        let gone = || zbus::fdo::Error::Failed("armord is shutting down".into());
        self.commands
            .send(Command::Trial {
                name,
                promote,
                uid,
                reply,
            })
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?.map_err(zbus::fdo::Error::Failed)
    }

    async fn run_sync(&self, allow_mass_removal: bool, accept_signed_serial: bool) -> zbus::fdo::Result<SyncResult> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Sync {
                reply,
                allow_mass_removal,
                accept_signed_serial,
            })
            .await
            .map_err(|_| zbus::fdo::Error::Failed("armord is shutting down".into()))?;
        rx.await
            .map_err(|_| zbus::fdo::Error::Failed("armord is shutting down".into()))
    }
}

#[interface(name = "org.armord.Armord1")]
impl Armord {
    /// starting, ready, degraded (ready, with problems) or reloading.
    #[zbus(property)]
    fn state(&self) -> String {
        self.read().state.clone()
    }

    /// Profiles by state: loaded, invalid, refused, deferred, held, unavailable.
    #[zbus(property)]
    fn counts(&self) -> HashMap<String, u32> {
        self.read().counts.clone()
    }

    /// When the last reconcile finished (microseconds since the epoch) and its summary.
    #[zbus(property)]
    fn last_sync(&self) -> (u64, String) {
        let p = self.read();
        (p.last_sync_usec, p.last_sync_summary.clone())
    }

    /// Audit records the kernel reported lost, and since when (µs since the
    /// epoch; 0 when none was).
    #[zbus(property)]
    fn denial_loss(&self) -> (u64, u64) {
        let c = self.denials.lock().unwrap_or_else(|p| p.into_inner());
        (c.lost, c.lost_since_us.unwrap_or(0))
    }

    #[zbus(property)]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    /// Every profile armord owns or refused, with its state and problem.
    fn list_profiles(&self) -> Vec<ProfileInfo> {
        self.read().profiles.iter().collect()
    }

    /// Run a reconcile now and return its result.
    async fn sync(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<SyncResult> {
        self.authorize(conn, &header).await?;
        self.run_sync(false, false).await
    }

    /// `Sync` with options. `allow-mass-removal` (boolean): remove the
    /// profiles of a held mass removal now, for the revision read.
    /// `accept-signed-serial` (boolean): apply a signed revision of a source
    /// whose last applied serial was lost, and take its serial as the floor.
    async fn sync_with_options(
        &self,
        options: HashMap<String, zbus::OwnedVariant>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<SyncResult> {
        self.authorize(conn, &header).await?;
        let mut allow = false;
        let mut accept = false;
        for (k, v) in &options {
            match k.as_str() {
                "allow-mass-removal" => {
                    allow = bool::try_from(v).map_err(|_| {
                        zbus::fdo::Error::InvalidArgs("option allow-mass-removal must be a boolean".into())
                    })?;
                }
                "accept-signed-serial" => {
                    accept = bool::try_from(v).map_err(|_| {
                        zbus::fdo::Error::InvalidArgs("option accept-signed-serial must be a boolean".into())
                    })?;
                }
                other => {
                    return Err(zbus::fdo::Error::InvalidArgs(format!(
                        "unknown option {}",
                        crate::escape::text(other)
                    )));
                }
            }
        }
        self.run_sync(allow, accept).await
    }

    /// Each profile in trial, or promoted from one: `trial: …` as
    /// `armorctl list` shows it.
    #[zbus(property)]
    fn trials(&self) -> HashMap<String, String> {
        self.read().trials.clone()
    }

    /// Each profile's lint warnings (never refusals): one line each,
    /// `file:line: [name] message; fix: …`.
    #[zbus(property)]
    fn lints(&self) -> HashMap<String, Vec<String>> {
        self.read().lints.clone()
    }

    /// Enforce a profile in trial now, whatever the gate says (root only;
    /// logged with the caller).
    async fn promote(
        &self,
        name: String,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<String> {
        let uid = self.authorize(conn, &header).await?;
        self.run_trial(name, true, uid).await
    }

    /// Put a promoted profile back in trial (complain mode; root only;
    /// logged with the caller).
    async fn trial(
        &self,
        name: String,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<String> {
        let uid = self.authorize(conn, &header).await?;
        self.run_trial(name, false, uid).await
    }

    /// Denials seen since armord started: profile → kind → count.
    fn get_denial_counters(&self) -> HashMap<String, HashMap<String, u64>> {
        let c = self.denials.lock().unwrap_or_else(|p| p.into_inner());
        c.by_profile
            .iter()
            .map(|(p, kinds)| (p.clone(), kinds.iter().map(|(k, n)| (k.clone(), *n)).collect()))
            .collect()
    }

    #[zbus(signal)]
    pub async fn profile_changed(emitter: &SignalEmitter<'_>, name: &str, state: &str) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn sync_finished(emitter: &SignalEmitter<'_>, clean: bool, summary: &str) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn denial(
        emitter: &SignalEmitter<'_>,
        profile: &str,
        kind: &str,
        operation: &str,
        name: &str,
    ) -> zbus::Result<()>;
}

/// The client side, for armorctl.
#[proxy(
    interface = "org.armord.Armord1",
    default_service = "org.armord.Armord1",
    default_path = "/org/armord/Armord1"
)]
pub trait Armord1 {
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn counts(&self) -> zbus::Result<HashMap<String, u32>>;
    #[zbus(property)]
    fn last_sync(&self) -> zbus::Result<(u64, String)>;
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn denial_loss(&self) -> zbus::Result<(u64, u64)>;
    #[zbus(property)]
    fn trials(&self) -> zbus::Result<HashMap<String, String>>;
    #[zbus(property)]
    fn lints(&self) -> zbus::Result<HashMap<String, Vec<String>>>;
    fn promote(&self, name: &str) -> zbus::Result<String>;
    fn trial(&self, name: &str) -> zbus::Result<String>;
    fn list_profiles(&self) -> zbus::Result<Vec<ProfileInfo>>;
    fn sync(&self) -> zbus::Result<SyncResult>;
    fn sync_with_options(&self, options: HashMap<&str, zbus::Variant<'_>>) -> zbus::Result<SyncResult>;
    fn get_denial_counters(&self) -> zbus::Result<HashMap<String, HashMap<String, u64>>>;
}

/// Which bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Bus {
    System,
    Session,
    /// No D-Bus at all.
    None,
}

/// Which bus a client (armorctl) reaches armord on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientBus {
    System,
    Session,
}

/// The socket a simulation serves the interface on, peer to peer, under
/// its state directory: armorctl reaches a `--simulate` armord without a
/// system or session bus.
pub fn simulation_socket(state_dir: &std::path::Path) -> std::path::PathBuf {
    state_dir.join("armord.sock")
}

/// Serve the interface peer to peer on a unix socket at `path` (a
/// simulation's): each client gets its own connection. A socket a live
/// armord answers on is left alone; a stale one is replaced.
pub async fn serve_socket(path: &std::path::Path, object: Armord) -> Option<tokio::task::JoinHandle<()>> {
    if tokio::net::UnixStream::connect(path).await.is_ok() {
        log::warn!(
            "{}: another armord serves here; this one serves no D-Bus interface",
            crate::escape::path(path)
        );
        return None;
    }
    let _ = std::fs::remove_file(path);
    // Only its owner connects, whatever the umask: made 0600 by the umask
    // of the bind itself, so no other user connects before a chmod.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = tokio::net::UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = match bound {
        Ok(l) => l,
        Err(e) => {
            log::warn!(
                "{}: cannot serve the D-Bus interface: {e}; armord keeps working without it",
                crate::escape::path(path)
            );
            return None;
        }
    };
    log::info!(
        "D-Bus: serving {BUS_NAME} on {} (armorctl --simulate)",
        crate::escape::path(path)
    );
    Some(tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, say: wait instead of spinning.
                    log::debug!("D-Bus: accepting on the simulation socket: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let mut object = object.clone();
            object.peer_uid = stream.peer_cred().ok().map(|c| c.uid());
            tokio::spawn(async move {
                let Ok(stream) = stream.into_std() else { return };
                let built = async {
                    zbus::connection::Builder::unix_stream(stream)
                        .server(zbus::Guid::generate())
                        .p2p()
                        .serve_at(OBJECT_PATH, object)
                        .build()
                        .await
                }
                .await;
                match built {
                    // The connection serves until the client hangs up.
                    Ok(conn) => conn.closed().await,
                    Err(e) => log::debug!("D-Bus: a client on the simulation socket: {e}"),
                }
            });
        }
    }))
}

/// Connect as the service: own the name and serve the object. `None` when
/// there is no bus (logged; armord keeps working without D-Bus).
pub async fn serve(bus: Bus, object: Armord) -> Option<zbus::Connection> {
    let builder = match bus {
        Bus::System => zbus::connection::Builder::system(),
        Bus::Session => zbus::connection::Builder::session(),
        Bus::None => return None,
    };
    let built = async { builder.name(BUS_NAME).serve_at(OBJECT_PATH, object).build().await }.await;
    match built {
        Ok(c) => {
            log::info!("D-Bus: serving {BUS_NAME} on the {bus:?} bus");
            Some(c)
        }
        Err(e) => {
            log::warn!("D-Bus: not available ({e}); armord keeps working without it");
            None
        }
    }
}

/// Where a client reaches armord.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Bus(ClientBus),
    /// A simulation's socket (see [`simulation_socket`]).
    Socket(std::path::PathBuf),
}

/// Connect as a client.
pub async fn connect(to: &Endpoint) -> zbus::Result<zbus::Connection> {
    match to {
        Endpoint::Bus(ClientBus::Session) => zbus::Connection::session().await,
        Endpoint::Bus(ClientBus::System) => zbus::Connection::system().await,
        Endpoint::Socket(path) => {
            let stream =
                std::os::unix::net::UnixStream::connect(path).map_err(|e| zbus::Error::InputOutput(e.into()))?;
            zbus::connection::Builder::unix_stream(stream).p2p().build().await
        }
    }
}

/// The committed introspection XML of the interface (the contract).
pub const INTROSPECTION_XML: &str = include_str!("org.armord.Armord1.xml");
