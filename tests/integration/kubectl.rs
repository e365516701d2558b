//! kubectl, the real client, against the in-process API test server.
