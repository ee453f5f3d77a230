// Package resp adds to github.com/tidwall/resp what the replication links need.
//
// tidwall/resp parses whole replies from an io.Reader, with its own buffer and
// fixed caps. The upstream link instead shares one bufio.Reader between three
// kinds of data: handshake replies, the RDB payload and the command stream.
// So this package:
//
//   - frames a reply inside the caller's buffer before handing exactly those
//     bytes to tidwall/resp (Frame, ReadValue), so no byte of what follows is
//     swallowed;
//   - reads the RDB preamble, "$<len>\r\n" or "$EOF:<mark>\r\n", and copies the
//     payload without reading past its end (ReadPayloadHeader, CopyPayload);
//   - checks the framing of an RDB snapshot as it arrives (RDBChecker): magic,
//     version, leading aux fields, EOF opcode and CRC64, never the body, so
//     that a newer Redis or Valkey format passes with a warning;
//   - follows command boundaries in the replication stream without copying it
//     (Scanner), so the proxy can tell where a command ends and spot
//     REPLCONF GETACK.
//
// Every length a peer declares is checked against Limits before anything is
// buffered for it. Malformed input wraps ErrProtocol and over-limit input wraps
// ErrTooLarge; test them with errors.Is.
package resp
