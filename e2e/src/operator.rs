//! Running the operator as a real process in end-to-end tests.
