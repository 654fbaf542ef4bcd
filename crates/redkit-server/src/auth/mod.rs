//! Users and sessions: register, login, logout, logout-all, me.
//!
//! Passwords are hashed with argon2id (`password`); sessions are redkit
//! sessions behind an `HttpOnly` cookie (`session`). Login cycles the
//! session id (a session id known before login is never the one that is
//! authenticated after it), and logout-all ends every session of the user
//! on every instance through redkit's per-user session index.

mod password;
mod routes;
mod session;

pub use password::{HashingLimits, Passwords};
pub(crate) use routes::{login, logout, logout_all, me, register};
pub(crate) use session::set_cookie;
pub use session::{COOKIE_NAME, CurrentUser};
