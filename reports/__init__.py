"""What a run or a prediction reports: segment metrics, report files, the majority baseline,
and the figures."""
