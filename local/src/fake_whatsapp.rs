//! A fake of the WhatsApp Cloud API for the local stack and the tests (never deployed).
