//! Networking rules shared by the API and the workers (issue 17.1): the network policy that
//! says which addresses a page or a stream output may reach ([`policy`]), the resolver that
//! judges every answer before anything connects to it ([`resolve`]), and the forward proxy
//! every request of a page goes through ([`proxy`]).

pub mod policy;
pub mod proxy;
pub mod resolve;

pub use policy::{Policy, Refusal, Rule, Verdict};
pub use resolve::{Blocked, Checker};
