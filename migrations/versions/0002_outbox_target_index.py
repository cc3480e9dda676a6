"""outbox index for per-recipient rate windows

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 06:49:51.941487
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_message_target_sent", ["target_id", "sent_at"], unique=False)



def downgrade() -> None:
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_message_target_sent")

