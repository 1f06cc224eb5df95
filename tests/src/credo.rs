//! Driving credo-ts 0.5.19 agents from tests (being written).
