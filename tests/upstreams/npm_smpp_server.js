// An upstream SMSC on the npm "smpp" package (pinned in package.json), for
// tests/integration/test_upstream_external.py: takes any bind, answers each submit_sm
// with a decimal message_id, then sends a DELIVRD receipt in the text only (no TLVs),
// the id written in hex — so the test pins the hex/decimal rule. Prints
// "LISTENING <port>" once it listens.
'use strict';
const smpp = require('smpp');
let next = 1000;
const server = smpp.createServer(function (session) {
  session.on('bind_transceiver', function (pdu) {
    session.send(pdu.response());
  });
  session.on('enquire_link', function (pdu) { session.send(pdu.response()); });
  session.on('unbind', function (pdu) { session.send(pdu.response()); session.close(); });
  session.on('submit_sm', function (pdu) {
    const id = next++;
    session.send(pdu.response({ message_id: String(id) }));
    const text = 'id:' + id.toString(16).toUpperCase() + ' sub:001 dlvrd:001 ' +
      'submit date:2601011200 done date:2601011200 stat:DELIVRD err:000 text:' +
      String(pdu.short_message.message || '').slice(0, 20);
    session.deliver_sm({
      source_addr: pdu.destination_addr,
      destination_addr: pdu.source_addr,
      esm_class: 4,
      short_message: text,
    });
  });
  session.on('error', function () {});
});
server.listen(Number(process.argv[2] || 0), '127.0.0.1', function () {
  process.stdout.write('LISTENING ' + server.address().port + '\n');
});
