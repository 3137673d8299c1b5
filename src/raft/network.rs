//! Raft network for a lone server: every peer is unreachable.
//!
//! TEMPORARY. A single voter never needs to contact anyone, so each RPC fails as
//! `Unreachable`. Server RPC over TCP (length-prefixed frames on the server port) replaces this
//! when clustering lands; nothing else in `raft/` depends on this type.

use std::future::Future;

use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RaftNetworkV2};

use super::state_machine::SnapshotData;
use super::types::{MusterNode, TypeConfig, Vote};

/// Network factory whose clients reach no one.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPeersNetwork;

/// Client to a peer that cannot be reached.
#[derive(Debug)]
pub struct UnreachablePeer {
    target: u64,
}

impl UnreachablePeer {
    fn unreachable(&self) -> Unreachable<TypeConfig> {
        Unreachable::from_string(format!(
            "node {}: server RPC is not implemented yet (single-server mode)",
            self.target
        ))
    }
}

impl RaftNetworkFactory<TypeConfig> for NoPeersNetwork {
    type Network = UnreachablePeer;

    async fn new_client(&mut self, target: u64, _node: &MusterNode) -> UnreachablePeer {
        UnreachablePeer { target }
    }
}

impl RaftNetworkV2<TypeConfig> for UnreachablePeer {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn pre_vote(
        &mut self,
        _rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn full_snapshot(
        &mut self,
        _vote: Vote,
        _snapshot: openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotData>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        Err(StreamingError::Unreachable(self.unreachable()))
    }
}
