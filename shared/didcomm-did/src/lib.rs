//! DIDs and DID documents of DIDComm v1 connections (being written).
