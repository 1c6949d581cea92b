from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("annotations", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="comparison",
            name="active_assignments",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddIndex(
            model_name="comparison",
            index=models.Index(
                fields=["study", "is_gold", "excluded", "-active_assignments", "id"], name="comparison_pool_idx"
            ),
        ),
    ]
