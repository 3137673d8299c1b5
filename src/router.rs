pub use muster_shards::route::shard_for;
