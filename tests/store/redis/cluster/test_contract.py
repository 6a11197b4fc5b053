"""The Redis store's contract tests, collected again here so that they run against the
sharded store on a real Redis Cluster (conftest.py overrides ``store`` and
``make_store``): every test of tests/store/redis that uses the Store contract alone.
Those that read the single Redis's keys directly, or poke at one RedisStore's
internals (its batcher, its Redis connection), stay there."""

from __future__ import annotations

from tests.store.redis.test_callbacks import (  # noqa: F401
    test_a_message_final_already_adds_no_event,
    test_an_mo_is_stored_final_with_its_deliver_sm_and_event,
    test_delivered_leaves_no_timeline_entry,
    test_failed_and_expired_are_in_the_timeline,
    test_retry_waits_until_due,
    test_sent_then_final_in_order,
)
from tests.store.redis.test_history import (  # noqa: F401
    test_count_submitted_uses_the_account_index,
    test_cursor_paging_returns_every_message_exactly_once,
    test_every_filter_and_combination,
    test_intermediate_status_keeps_the_message_sent,
    test_limit_and_empty_queries,
    test_next_page_starts_strictly_after_the_cursor,
    test_paging_survives_the_cursor_message_leaving_the_index,
    test_purge_takes_at_most_limit,
    test_receipt_of_another_account_shows_its_account,
    test_receipts_of_shows_every_state_in_creation_order,
    test_search_of_one_account_never_returns_another_accounts,
    test_ties_are_broken_by_id_descending,
    test_timeline_is_found_by_any_part_id,
    test_timeline_of_a_message_accepted_final,
    test_timeline_of_a_message_sent_twice,
    test_timeline_of_a_retried_sent_intermediate_final_message,
    test_timeline_of_a_send_racing_a_cancel,
    test_timeline_of_unknown_message_is_empty,
)
from tests.store.redis.test_idempotency import (  # noqa: F401
    test_concurrent_claims_on_two_nodes_have_one_winner,
)
from tests.store.redis.test_store import (  # noqa: F401
    test_accept_many_answers_each_message,
    test_accepted_message_survives_a_new_client,
    test_any_text_round_trips,
    test_batch_operations_of_the_store_contract,
    test_cancelled_message_leaves_the_work_queue,
    test_dead_nodes_message_is_claimed_by_another,
    test_due_sent_final_lifecycle,
    test_failed_parts_leave_receipts,
    test_history_is_capped,
    test_live_node_keeps_the_messages_it_works_on,
    test_message_refused_after_partial_ack_is_stored_final,
    test_oldest_queued_is_the_oldest_message_waiting,
    test_parts_kept_until_message_whole,
    test_provider_index_is_unambiguous,
    test_ready,
    test_receipt_lease_keeps_other_nodes_off,
    test_receipts_in_order_per_account_with_retry_and_expiry,
    test_reserved_ids_never_repeat_across_nodes_and_restarts,
    test_retried_receipt_keeps_its_place_in_line,
    test_retry_moves_next_attempt,
    test_scheduled_message_waits,
    test_send_racing_a_cancel_stays_final,
    test_two_nodes_never_get_the_same_message,
)
