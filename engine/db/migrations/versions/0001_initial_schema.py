"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import engine.db.schema

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('customers',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('external_id', sa.String(length=255), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('phone', sa.String(length=64), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=True),
    sa.Column('locale', sa.String(length=32), nullable=True),
    sa.Column('first_name', sa.String(length=255), nullable=True),
    sa.Column('attributes', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('salt', sa.Integer(), nullable=False),
    sa.Column('referral_code', sa.String(length=32), nullable=True),
    sa.Column('referred_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('stage', sa.String(length=64), nullable=True),
    sa.Column('stage_entered_at', engine.db.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('identified_at', engine.db.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('first_seen_at', engine.db.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('email_suppressed_at', engine.db.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('email_suppressed_reason', sa.Text(), nullable=True),
    sa.Column('created_at', engine.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['referred_by'], ['customers.id'], name=op.f('fk_customers_referred_by_customers'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customers')),
    sa.UniqueConstraint('external_id', name=op.f('uq_customers_external_id')),
    sa.UniqueConstraint('referral_code', name=op.f('uq_customers_referral_code'))
    )
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.create_index('ix_customers_stage', ['stage'], unique=False)

    op.create_table('meta',
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('updated_at', engine.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_meta'))
    )
    op.create_table('rule_state',
    sa.Column('rule_id', sa.String(length=128), nullable=False),
    sa.Column('first_tick_at', engine.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('rule_id', name=op.f('pk_rule_state'))
    )
    op.create_table('ticks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('now', engine.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('prev_now', engine.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('event_seq', sa.BigInteger(), nullable=False),
    sa.Column('prev_event_seq', sa.BigInteger(), nullable=False),
    sa.Column('started_at', engine.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', engine.db.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('stats', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticks'))
    )
    with op.batch_alter_table('ticks', schema=None) as batch_op:
        batch_op.create_index('ix_ticks_now', ['now'], unique=False)

    op.create_table('enrollments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('rule_id', sa.String(length=128), nullable=False),
    sa.Column('customer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('occurrence', sa.BigInteger(), nullable=False),
    sa.Column('trigger_event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('entered_at', engine.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('tick_at', engine.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('position', sa.String(length=255), nullable=True),
    sa.Column('due_at', engine.db.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('variant', sa.String(length=64), nullable=True),
    sa.Column('bucket', sa.Integer(), nullable=False),
    sa.Column('ended_at', engine.db.schema.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_enrollments_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enrollments')),
    sa.UniqueConstraint('rule_id', 'customer_id', 'occurrence', name=op.f('uq_enrollments_rule_id_customer_id_occurrence'))
    )
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.create_index('ix_enrollments_customer', ['customer_id', 'rule_id'], unique=False)
        batch_op.create_index('ix_enrollments_rule_status_due', ['rule_id', 'status', 'due_at'], unique=False)

    op.create_table('event_summary',
    sa.Column('customer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('first_at', engine.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_at', engine.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('last_event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('last_properties', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_event_summary_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('customer_id', 'name', name=op.f('pk_event_summary'))
    )
    with op.batch_alter_table('event_summary', schema=None) as batch_op:
        batch_op.create_index('ix_event_summary_name_last_at', ['name', 'last_at'], unique=False)

    op.create_table('events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('ts', engine.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('received_at', engine.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('message_id', sa.String(length=255), nullable=True),
    sa.Column('properties', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_events_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events')),
    sa.UniqueConstraint('message_id', name=op.f('uq_events_message_id'))
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_customer_name_ts', ['customer_id', 'name', 'ts'], unique=False)
        batch_op.create_index('ix_events_ts', ['ts'], unique=False)

    op.create_table('stage_history',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('from_stage', sa.String(length=64), nullable=True),
    sa.Column('to_stage', sa.String(length=64), nullable=False),
    sa.Column('at', engine.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('fires', sa.Boolean(), nullable=False),
    sa.Column('tick_id', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_stage_history_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stage_history'))
    )
    with op.batch_alter_table('stage_history', schema=None) as batch_op:
        batch_op.create_index('ix_stage_history_at', ['at'], unique=False)
        batch_op.create_index('ix_stage_history_tick', ['tick_id', 'customer_id'], unique=False)
        batch_op.create_index('ix_stage_history_customer', ['customer_id', 'at'], unique=False)

    op.create_table('unsubscribes',
    sa.Column('customer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('topic', sa.String(length=64), nullable=False),
    sa.Column('at', engine.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_unsubscribes_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('customer_id', 'channel', 'topic', name=op.f('pk_unsubscribes'))
    )
    op.create_table('sends',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('rule_id', sa.String(length=128), nullable=False),
    sa.Column('step', sa.String(length=255), nullable=False),
    sa.Column('customer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('occurrence', sa.BigInteger(), nullable=False),
    sa.Column('enrollment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('template', sa.String(length=255), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('transactional', sa.Boolean(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('due_at', engine.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', engine.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('lease_until', engine.db.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('queued_at', engine.db.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('sent_at', engine.db.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('subject', sa.Text(), nullable=True),
    sa.Column('response', sa.Text(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('reason', sa.String(length=64), nullable=True),
    sa.Column('message_id', sa.String(length=255), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_sends_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollments.id'], name=op.f('fk_sends_enrollment_id_enrollments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sends')),
    sa.UniqueConstraint('rule_id', 'step', 'customer_id', 'occurrence', name=op.f('uq_sends_rule_id_step_customer_id_occurrence'))
    )
    with op.batch_alter_table('sends', schema=None) as batch_op:
        batch_op.create_index('ix_sends_customer_sent', ['customer_id', 'sent_at'], unique=False)
        batch_op.create_index('ix_sends_status_due', ['status', 'due_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('sends', schema=None) as batch_op:
        batch_op.drop_index('ix_sends_status_due')
        batch_op.drop_index('ix_sends_customer_sent')

    op.drop_table('sends')
    op.drop_table('unsubscribes')
    with op.batch_alter_table('stage_history', schema=None) as batch_op:
        batch_op.drop_index('ix_stage_history_tick')
        batch_op.drop_index('ix_stage_history_customer')
        batch_op.drop_index('ix_stage_history_at')

    op.drop_table('stage_history')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_ts')
        batch_op.drop_index('ix_events_customer_name_ts')

    op.drop_table('events')
    with op.batch_alter_table('event_summary', schema=None) as batch_op:
        batch_op.drop_index('ix_event_summary_name_last_at')

    op.drop_table('event_summary')
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.drop_index('ix_enrollments_rule_status_due')
        batch_op.drop_index('ix_enrollments_customer')

    op.drop_table('enrollments')
    with op.batch_alter_table('ticks', schema=None) as batch_op:
        batch_op.drop_index('ix_ticks_now')

    op.drop_table('ticks')
    op.drop_table('rule_state')
    op.drop_table('meta')
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_index('ix_customers_stage')

    op.drop_table('customers')
