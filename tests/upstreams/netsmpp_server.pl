#!/usr/bin/perl
# An upstream SMSC on Net::SMPP (Debian libnet-smpp-perl), for
# tests/integration/test_upstream_external.py: one connection at a time, takes any
# bind, answers each submit_sm with a hex message_id and sends a DELIVRD receipt with
# receipted_message_id and message_state TLVs. Prints "LISTENING <port>".
use strict;
use warnings;
use Net::SMPP;

$| = 1;
my $listen = Net::SMPP->new_listen('127.0.0.1', port => ($ARGV[0] || 0),
                                   smpp_version => 0x34, async => 1) or die "listen: $!";
print "LISTENING " . $listen->sockport() . "\n";
my $next = 0xA000;
while (my $smpp = $listen->accept()) {
    while (my $pdu = $smpp->read_pdu()) {
        my $cmd = $pdu->{cmd};
        if ($cmd == Net::SMPP::CMD_bind_transceiver) {
            $smpp->bind_transceiver_resp(seq => $pdu->{seq}, system_id => 'netsmpp');
        } elsif ($cmd == Net::SMPP::CMD_enquire_link) {
            $smpp->enquire_link_resp(seq => $pdu->{seq});
        } elsif ($cmd == Net::SMPP::CMD_unbind) {
            $smpp->unbind_resp(seq => $pdu->{seq});
            last;
        } elsif ($cmd == Net::SMPP::CMD_submit_sm) {
            my $id = sprintf('%X', $next++);
            $smpp->submit_sm_resp(seq => $pdu->{seq}, message_id => $id);
            my $text = "id:$id sub:001 dlvrd:001 submit date:2601011200 "
                . "done date:2601011200 stat:DELIVRD err:000 text:";
            $smpp->deliver_sm(source_addr => $pdu->{destination_addr},
                              destination_addr => $pdu->{source_addr},
                              esm_class => 4, short_message => $text,
                              receipted_message_id => $id, message_state => 2);
        }
    }
    close $smpp;
}
