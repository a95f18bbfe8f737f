from tortoise import migrations
from tortoise.migrations import operations as ops
from taskdash.core.clock import utcnow
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('taskdash', '0004_run_phases')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Replica',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=128)),
                ('started_at', fields.DatetimeField(default=utcnow, auto_now=False, auto_now_add=False)),
                ('heartbeat_at', fields.DatetimeField(default=utcnow, auto_now=False, auto_now_add=False)),
                ('lease_expires_at', fields.DatetimeField(default=utcnow, db_index=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'replica', 'app': 'taskdash', 'pk_attr': 'id', 'table_description': 'A taskdash process sharing the database, with a lease it renews while it lives.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Run',
            name='owner',
            field=fields.CharField(null=True, max_length=128),
        ),
        ops.AddField(
            model_name='Run',
            name='stop_requested',
            field=fields.BooleanField(default=False, db_default=False),
        ),
        ops.AddIndex(
            model_name='Run',
            index=Index(fields=['owner', 'status']),
        ),
    ]
