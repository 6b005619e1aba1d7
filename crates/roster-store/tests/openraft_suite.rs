//! openraft's own storage test suite (`openraft::testing::log::Suite`) against the sled store.

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use roster_raft::GroupKey;
use roster_raft::{typ, GroupState, TypeConfig};
use roster_registrar::Policy;
use roster_store::{LogStore, NodeStore, StateMachineStore};

/// Each build is a fresh database in its own temporary directory, removed when the guard goes.
struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore<GroupState>, tempfile::TempDir>
    for SledBuilder
{
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore<GroupState>), typ::StorageError>
    {
        let directory = tempfile::tempdir()
            .map_err(|error| typ::StorageError::read(TypeConfig::err_from_string(error)))?;
        let node = NodeStore::open(directory.path().join("node"))
            .map_err(|error| typ::StorageError::read(TypeConfig::err_from_string(error)))?;
        let (log, state_machine) = node
            .group(GroupKey::routing(1, 7), GroupState::new(Policy::default()))
            .map_err(|error| typ::StorageError::read(TypeConfig::err_from_string(error)))?;
        Ok((directory, log, state_machine))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes() {
    Suite::test_all(SledBuilder).await.unwrap();
}
