from tortoise import migrations
from tortoise.migrations import operations as ops
from taskdash.core.clock import utcnow
from taskdash.core.models import SlotOutcome
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('taskdash', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ScheduleSlot',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('task', fields.ForeignKeyField('taskdash.Task', source_field='task_id', db_constraint=True, to_field='id', related_name='schedule_slots', on_delete=OnDelete.CASCADE)),
                ('slot_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('outcome', fields.CharEnumField(description='FIRED: fired\nSKIPPED: skipped\nWAITING: waiting\nMISSED: missed', enum_type=SlotOutcome, max_length=8)),
                ('run_id', fields.UUIDField(null=True)),
                ('catch_up', fields.BooleanField(default=False)),
                ('missed_before', fields.IntField(default=0)),
                ('reason', fields.CharField(default='', max_length=200)),
                ('recorded_at', fields.DatetimeField(default=utcnow, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'schedule_slot', 'app': 'taskdash', 'unique_together': (('task', 'slot_at'),), 'indexes': [Index(fields=['outcome', 'slot_at'])], 'pk_attr': 'id', 'table_description': 'One decided cron slot of a task: fired (with its run), skipped, waiting or missed.'},
            bases=['Model'],
        ),
        ops.AlterField(
            model_name='Schedule',
            name='next_run_at',
            field=fields.DatetimeField(null=True, db_index=True, auto_now=False, auto_now_add=False),
        ),
    ]
