//! Driving ACA-Py 1.7 agents from tests (being written).
