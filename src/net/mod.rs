//! Networking rules shared by the API and the workers: the network policy that says which
//! addresses a page or a stream output may reach ([`policy`]). Issue 17.1: the policy is
//! judged here; enforcing it in Chromium's requests (a policy-checking forward proxy) and in
//! stream outputs is the next step (docs/operations.md, "Not done yet").

pub mod policy;

pub use policy::{Policy, Refusal, Rule, Verdict};
