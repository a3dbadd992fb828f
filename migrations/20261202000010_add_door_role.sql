-- Door staff: accounts that scan tickets at the entrance (POST /api/v1/checkins) and download a
-- showtime's check-in bundle for offline scanning. Granted by an admin
-- (PUT /api/v1/users/{id}/role). Nothing in this migration uses the new value, so it may run
-- inside the migration's transaction.
alter type user_role add value if not exists 'door' before 'admin';
